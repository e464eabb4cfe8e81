#!/usr/bin/python
# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: package_source
short_description: Package an app's source into a reproducible release archive on the controller
version_added: "0.1.0"
description:
  - Turns O(source) (a directory, a C(.tar.gz)/C(.tgz)/C(.tar) archive, or a git repository URL
    with O(version)) into a tar.gz archive whose content, file order, owners and times are
    fixed, so that the same source always gives the same archive and the same release id.
  - The release id is derived from the content (a directory or archive) or from the resolved
    commit (git), so deploying unchanged code again changes nothing.
  - "Runs on the controller: use C(delegate_to: localhost)."
author:
  - slipway developers (@slipway)
options:
  source:
    description:
      - A directory or archive on the controller, or a git repository URL
        (C(https://...), C(ssh://...), C(git@host:path), C(file://...) or a path ending in C(.git)).
    type: str
    required: true
  version:
    description:
      - For a git source, the branch, tag or commit to package. Ignored for other sources.
    type: str
    default: HEAD
  dest:
    description:
      - Directory on the controller where archives (and git mirrors) are kept.
    type: path
    required: true
  exclude:
    description:
      - Shell patterns of paths (relative to the source root) or file names left out of the
        archive.
    type: list
    elements: str
    default: [".git", "__pycache__", "*.pyc", ".venv", "venv", ".env", "*.sqlite3", "node_modules",
              ".pytest_cache", ".mypy_cache", ".ruff_cache"]
  requirements:
    description:
      - Path of the pip requirements file inside the source (with O(dependencies=requirements),
        or found by O(dependencies=auto)). The files it includes (C(-r), C(-c)) are followed.
    type: str
    default: requirements.txt
  dependencies:
    description:
      - How the source declares its Python dependencies. V(auto) looks for O(requirements),
        then C(pyproject.toml) with C(uv.lock) (V(uv)), then a C(pyproject.toml) with a
        C([project]) table (V(pyproject)), and fails naming the files it looked for.
    type: str
    choices: [auto, requirements, uv, pyproject]
    default: auto
    version_added: "0.2.0"
  frontend:
    description:
      - A front end built from the source on the build host (the app role's C(app_frontend)).
        The module checks it and returns RV(frontend), whose C(digest) keys the build cache;
        it builds nothing (the controller needs no Node.js).
      - The digest covers the lock file, every file under O(frontend.path) except
        C(node_modules) and O(frontend.output) (and what O(exclude) leaves out), the build
        command and O(frontend.node), so any change to what the build reads gives a new key.
    type: dict
    suboptions:
      path:
        description: The front end's directory in the source (where C(package.json) is).
        type: str
        required: true
      output:
        description: The directory, under O(frontend.path), that the build writes.
        type: str
        default: dist
      build:
        description: The build command, run in O(frontend.path).
        type: str
        default: npm ci && npm run build
      node:
        description: The Node.js the build runs on (part of the digest).
        type: str
        default: debian
    version_added: "0.2.0"
attributes:
  check_mode:
    description: Can run in check mode and predict its changes without making them.
    support: full
    details: Computes the release id and reports the archive it would write, without writing it.
  diff_mode:
    description: Returns details of what changed (or would change in check mode).
    support: none
notes:
  - A git source needs the C(git) command on the controller.
"""

EXAMPLES = r"""
- name: Package the app from a directory
  slipway.django.package_source:
    source: "{{ playbook_dir }}/../examples/app"
    dest: "{{ lookup('env', 'HOME') }}/.cache/slipway/releases/mes"
  delegate_to: localhost
  run_once: true
  register: release

- name: Package a tag from a git repository
  slipway.django.package_source:
    source: https://git.example.com/acme/mes.git
    version: v1.4.2
    dest: /var/cache/slipway/mes
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
release_id:
  description: Id of the release, derived from the content or the commit.
  returned: always
  type: str
  sample: 3f2a9c1b7d0e
archive:
  description: Path of the archive on the controller.
  returned: always
  type: str
  sample: /root/.cache/slipway/releases/mes/3f2a9c1b7d0e.tar.gz
digest:
  description: SHA-256 of the packaged content (file names, modes and contents).
  returned: always
  type: str
  sample: 3f2a9c1b7d0e5d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c
source_type:
  description: What the source was.
  returned: always
  type: str
  sample: directory
commit:
  description: The git commit packaged (for a directory, the commit of its repository if any).
  returned: always
  type: str
  sample: 9fceb02d0ae598e95dc970b74767f19372d61af8
branch:
  description: The branch packaged, when known.
  returned: always
  type: str
  sample: main
dirty:
  description: Whether a directory source had changes not committed to its git repository.
  returned: always
  type: bool
  sample: false
dependencies:
  description:
    - How the source declares its dependencies - C(format) (V(requirements), V(uv) or
      V(pyproject)), C(files) (every dependency file, includes too), C(digest) (SHA-256 over
      them), C(requirements) (the top requirements file), C(dependencies) (a plain pyproject's
      list), C(build_project) (whether the project itself is installed) and C(requires_python)
      (from C(pyproject.toml), empty when not declared).
  returned: always
  type: dict
  sample:
    format: requirements
    files: [requirements.txt, requirements/base.txt]
    digest: 1b4f0e9851971998e732078544c96b36c3d01cedf7caa332359d6f1d83567014
    requirements: requirements.txt
    dependencies: []
    build_project: false
    requires_python: ">=3.12"
  version_added: "0.2.0"
requirements_digest:
  description: The C(digest) of RV(dependencies), kept for earlier callers.
  returned: always
  type: str
  sample: 1b4f0e9851971998e732078544c96b36c3d01cedf7caa332359d6f1d83567014
frontend:
  description:
    - With O(frontend), the front end as checked - C(path), C(output), C(build), C(node),
      C(lock_file) (the lock file found in O(frontend.path)), C(files) (the number of files the
      digest covers) and C(digest) (SHA-256 over them, the lock file, the build command and the
      Node.js). Empty without O(frontend).
  returned: always
  type: dict
  sample:
    path: frontend
    output: dist
    build: npm ci && npm run build
    node: debian
    lock_file: package-lock.json
    files: 12
    digest: 5d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c3f2a9c1b7d0e
  version_added: "0.2.0"
files:
  description: Number of files in the archive.
  returned: always
  type: int
  sample: 42
"""

import fnmatch
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.slipway.django.plugins.module_utils.app_dependencies import (
    DependencyError,
    detect,
)

# git runs from plain functions without an AnsibleModule (the unit tests and tests/testbed
# call them directly), hence subprocess rather than run_command.
# pylint: disable=ansible-bad-function

GIT_URL = re.compile(r"^(https?://|ssh://|git://|file://|[\w.-]+@[\w.-]+:)|\.git/?$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CHUNK = 1024 * 1024


class SourceError(Exception):
    """A source that cannot be packaged; the message says why and what to do."""


def is_excluded(relpath: str, patterns: list[str]) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relpath, p) or fnmatch.fnmatch(name, p) for p in patterns)


def walk_files(root: str, patterns: list[str]) -> list[str]:
    """Relative paths of the files to package, sorted, excluded ones left out."""
    found = []
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = sorted(d for d in dirs if not is_excluded(rel_dir + d, patterns))
        for name in files:
            relpath = rel_dir + name
            full = os.path.join(current, name)
            if is_excluded(relpath, patterns) or not (os.path.isfile(full) or os.path.islink(full)):
                continue
            found.append(relpath)
    return sorted(found)


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: str, files: list[str]) -> str:
    digest = hashlib.sha256()
    for relpath in files:
        full = os.path.join(root, relpath)
        if os.path.islink(full):
            content = "link:" + os.readlink(full)
            executable = False
        else:
            content = file_sha256(full)
            executable = os.access(full, os.X_OK)
        digest.update(f"{relpath}\0{int(executable)}\0{content}\n".encode())
    return digest.hexdigest()


def write_archive(root: str, files: list[str], archive: str) -> None:
    """A tar.gz with fixed order, owners, modes and times, written atomically."""
    directory = os.path.dirname(archive)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tar.gz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw:
            with (gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz,
                  tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar):
                for relpath in files:
                    full = os.path.join(root, relpath)
                    info = tar.gettarinfo(full, arcname=relpath)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    info.mtime = 0
                    if info.isreg():
                        info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
                        with open(full, "rb") as handle:
                            tar.addfile(info, handle)
                    else:
                        tar.addfile(info)
        os.chmod(tmp, 0o644)
        os.replace(tmp, archive)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_git(args: list[str], cwd: str | None = None) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                check=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except FileNotFoundError as exc:
        raise SourceError("git is not installed on the controller; install it (apt-get install"
                          " git) or deploy from a directory") from exc
    except subprocess.CalledProcessError as exc:
        raise SourceError(f"git {' '.join(args)} failed: {exc.stderr.strip()}") from exc
    return result.stdout.strip()


def directory_git_info(root: str) -> tuple[str, str, bool]:
    """Commit, branch and dirtiness of the repository holding a directory, if any."""
    if shutil.which("git") is None:
        return "", "", False
    probe = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                           text=True, check=False)
    if probe.returncode != 0:
        return "", "", False
    commit = probe.stdout.strip()
    branch = run_git(["-C", root, "rev-parse", "--abbrev-ref", "HEAD"])
    dirty = bool(run_git(["-C", root, "status", "--porcelain", "--", "."]))
    return commit, "" if branch == "HEAD" else branch, dirty


def safe_extract(tar: tarfile.TarFile, into: str) -> None:
    """Extract regular files and directories only, each inside `into`, with no setuid bits.

    Pythons with PEP 706 (3.11.4+, 3.12+) apply tarfile's own "data" filter; older ones (Debian
    12's 3.11.2) get the same refusals here: absolute or escaping names and links, hard links,
    devices.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    root = os.path.realpath(into)
    members = tar.getmembers()
    for member in members:
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or os.path.commonpath([root, target]) != root:
            raise SourceError(f"the archive's member {member.name!r} points outside it")
        if member.issym():
            pointed = os.path.realpath(os.path.join(os.path.dirname(target), member.linkname))
            if os.path.isabs(member.linkname) or os.path.commonpath([root, pointed]) != root:
                raise SourceError(f"the archive's link {member.name!r} points outside it")
            continue
        if not (member.isfile() or member.isdir()):
            raise SourceError(f"the archive's member {member.name!r} is not a regular file, "
                              "directory or link inside it (hard links and devices are refused)")
        member.mode &= 0o755 if member.isdir() else 0o644 | (member.mode & 0o111)
        member.uid = member.gid = os.getuid()
    tar.extractall(root, members=members)  # noqa: S202 - every member checked above


def extract_archive(path: str, into: str) -> str:
    """Extract an archive safely; return the source root (its single top directory if any)."""
    with tarfile.open(path) as tar:
        safe_extract(tar, into)
    entries = os.listdir(into)
    if len(entries) == 1 and os.path.isdir(os.path.join(into, entries[0])):
        return os.path.join(into, entries[0])
    return into


def git_checkout(url: str, version: str, cache: str, into: str) -> tuple[str, str]:
    """Resolve version in a cached mirror of url and export that commit into a directory."""
    if not version or version.startswith("-") or any(char.isspace() or ord(char) < 0x20
                                                     for char in version):
        # git would read a leading '-' as an option.
        raise SourceError(f"version {version!r} is not a branch, tag or commit name: it must "
                          "not be empty, start with '-' or hold whitespace or control characters")
    mirror = os.path.join(cache, "git", hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")
    if os.path.isdir(mirror):
        run_git(["--git-dir", mirror, "fetch", "--prune", "--tags", "origin",
                 "+refs/heads/*:refs/heads/*"])
    else:
        os.makedirs(os.path.dirname(mirror), exist_ok=True)
        run_git(["clone", "--mirror", "--quiet", url, mirror])
    commit = run_git(["--git-dir", mirror, "rev-parse", "--verify", "--quiet",
                      f"{version}^{{commit}}"])
    branches = run_git(["--git-dir", mirror, "for-each-ref", "--format=%(refname:short)",
                        "--points-at", commit, "refs/heads/"]).splitlines()
    branch = version if version in branches else (branches[0] if len(branches) == 1 else "")
    data = subprocess.run(["git", "--git-dir", mirror, "archive", "--format=tar", commit],
                          capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        safe_extract(tar, into)
    return commit, branch


# The lock files of npm, Yarn and pnpm, in the order they are looked for.
LOCK_FILES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml")


def _relative_dir(value: object, what: str) -> str:
    """A clean relative directory name, or a SourceError saying what was wrong."""
    text = str(value or "").strip().rstrip("/")
    if (not text or text.startswith(("/", "~")) or "\\" in text
            or any(part in ("", ".", "..") for part in text.split("/"))
            or any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)):
        raise SourceError(f"{what} must be a relative directory inside the source, without "
                          f"'..', '.', empty parts or control characters (found {value!r})")
    return text


def frontend_info(root: str, files: list[str], frontend: dict) -> dict:
    """Check a front end in the packaged files; its digest, lock file and file count."""
    path = _relative_dir(frontend.get("path"), "app_frontend.path")
    output = _relative_dir(frontend.get("output") or "dist", "app_frontend.output")
    build = str(frontend.get("build") or "npm ci && npm run build").strip()
    node = str(frontend.get("node") or "debian").strip()
    if not os.path.isdir(os.path.join(root, path)):
        raise SourceError(f"app_frontend.path {path!r} is not a directory of the source; point "
                          "it at the directory that holds the front end's package.json")
    prefix = path + "/"
    mine = [name[len(prefix):] for name in files if name.startswith(prefix)]
    if "package.json" not in mine:
        raise SourceError(f"app_frontend.path {path!r} has no package.json (or it is left out "
                          "by app_source_exclude); point it at the front end's directory")
    found = [name for name in LOCK_FILES if name in mine]
    if not found:
        raise SourceError(f"the front end in {path!r} has no lock file (looked for "
                          f"{', '.join(LOCK_FILES)}): a build from package.json alone installs "
                          "whatever versions are newest that day. Commit one (for npm: npm "
                          "install --package-lock-only)")
    # What the build reads: not its own output, and not installed packages (the lock file
    # stands for those).
    covered = [name for name in mine if "/node_modules/" not in f"/{name}"
               and not f"{name}/".startswith(f"{output}/")]
    digest = hashlib.sha256()
    digest.update(f"build\0{build}\nnode\0{node}\nlock\0{found[0]}\n".encode())
    digest.update(tree_digest(os.path.join(root, path), covered).encode())
    return {"path": path, "output": output, "build": build, "node": node,
            "lock_file": found[0], "files": len(covered), "digest": digest.hexdigest()}


def package(params: dict, check_mode: bool) -> dict:
    source = params["source"]
    dest = params["dest"]
    patterns = params["exclude"]
    result = {"commit": "", "branch": "", "dirty": False}
    with tempfile.TemporaryDirectory(prefix="slipway-source-") as scratch:
        if GIT_URL.search(source) and not os.path.isdir(source):
            os.makedirs(dest, exist_ok=True)
            root = os.path.join(scratch, "tree")
            os.makedirs(root)
            result["commit"], result["branch"] = git_checkout(source, params["version"], dest,
                                                              root)
            result["source_type"] = "git"
        elif os.path.isdir(source):
            root = source
            result["commit"], result["branch"], result["dirty"] = directory_git_info(source)
            result["source_type"] = "directory"
        elif os.path.isfile(source) and source.endswith(ARCHIVE_SUFFIXES):
            root = extract_archive(source, scratch)
            result["source_type"] = "archive"
        else:
            raise SourceError(f"source {source!r} is neither a directory, a .tar.gz/.tgz/.tar "
                              "archive nor a git repository URL; point app_source at one")
        files = walk_files(root, patterns)
        if not files:
            raise SourceError(f"source {source!r} holds no files once {patterns} are left out")
        digest = tree_digest(root, files)
        release_id = digest[:12]
        try:
            dependencies = detect(root, params["dependencies"], params["requirements"])
        except DependencyError as exc:
            raise SourceError(str(exc)) from exc
        left_out = [name for name in dependencies["files"] if name not in files]
        if left_out:
            raise SourceError(f"the dependency files {', '.join(left_out)} are left out of the "
                              f"release by app_source_exclude {patterns}; keep them in")
        frontend = params.get("frontend")
        frontend = frontend_info(root, files, frontend) if frontend else {}
        archive = os.path.join(dest, f"{release_id}.tar.gz")
        changed = not os.path.exists(archive)
        if changed and not check_mode:
            os.makedirs(dest, exist_ok=True)
            write_archive(root, files, archive)
        result.update(
            changed=changed,
            release_id=release_id,
            archive=archive,
            digest=digest,
            files=len(files),
            dependencies=dependencies,
            requirements_digest=dependencies["digest"],
            frontend=frontend,
        )
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "required": True},
            "version": {"type": "str", "default": "HEAD"},
            "dest": {"type": "path", "required": True},
            "exclude": {"type": "list", "elements": "str",
                        "default": [".git", "__pycache__", "*.pyc", ".venv", "venv", ".env",
                                    "*.sqlite3", "node_modules", ".pytest_cache", ".mypy_cache",
                                    ".ruff_cache"]},
            "requirements": {"type": "str", "default": "requirements.txt"},
            "dependencies": {"type": "str", "default": "auto",
                             "choices": ["auto", "requirements", "uv", "pyproject"]},
            "frontend": {"type": "dict", "options": {
                "path": {"type": "str", "required": True},
                "output": {"type": "str", "default": "dist"},
                "build": {"type": "str", "default": "npm ci && npm run build"},
                "node": {"type": "str", "default": "debian"},
            }},
        },
        supports_check_mode=True,
    )
    try:
        result = package(module.params, module.check_mode)
    except SourceError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
