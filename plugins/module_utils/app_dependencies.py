# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an app declares its Python dependencies, read from its source tree on the controller.

Three formats are known:

- ``requirements``: a pip requirements file, with every file it includes (``-r``/``-c``,
  relative to the including file), the whole tree digested together;
- ``uv``: ``pyproject.toml`` with ``uv.lock`` (installed from the lock, never re-resolved);
- ``pyproject``: a plain ``pyproject.toml`` project (its ``[project] dependencies``, and the
  project itself when it declares a build system: ``pip install .``).
"""

from __future__ import annotations

import hashlib
import os
import re

try:
    import tomllib
except ImportError:  # Python < 3.11: the controller of ansible-core 2.19 always has it
    tomllib = None

FORMATS = ("requirements", "uv", "pyproject")
_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?=[^\s-]))(\S+)")


class DependencyError(Exception):
    """The source's dependencies cannot be read; the message says what to do."""


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def requirements_tree(root: str, top: str) -> list[str]:
    """The requirements file ``top`` (relative to root) and every file it includes, in the
    order found; each relative to root. A missing or escaping include is an error."""
    found: list[str] = []
    pending = [(top, None)]
    while pending:
        relpath, included_by = pending.pop(0)
        if relpath in found:
            continue
        full = os.path.normpath(os.path.join(root, relpath))
        if not os.path.isfile(full):
            where = f" (included by {included_by})" if included_by else ""
            raise DependencyError(f"the requirements file {relpath}{where} is not in the source")
        found.append(relpath)
        for number, line in enumerate(_read(full).decode("utf-8", "replace").splitlines(), 1):
            match = _INCLUDE.match(line.split(" #", 1)[0])
            if not match:
                continue
            target = match.group(2)
            if "://" in target:
                raise DependencyError(
                    f"{relpath} line {number} includes {target}, a URL: the wheels must be "
                    "buildable from the source alone; copy that file into the source")
            included = os.path.normpath(os.path.join(os.path.dirname(relpath), target))
            if included.startswith("..") or os.path.isabs(included):
                raise DependencyError(f"{relpath} line {number} includes {target}, which is "
                                      "outside the source")
            pending.append((included, f"{relpath} line {number}"))
    return found


def requirements_files(root: str) -> list[str]:
    """The files of the source that look like requirements files (``requirements*.txt`` at the
    root and ``*.txt`` in a ``requirements*/`` directory), relative to root, sorted."""
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.startswith("requirements") and name.endswith(".txt") and os.path.isfile(path):
            found.append(name)
        elif name.startswith("requirements") and os.path.isdir(path):
            found += [f"{name}/{inner}" for inner in os.listdir(path)
                      if inner.endswith(".txt") and os.path.isfile(os.path.join(path, inner))]
    return sorted(found)


def _missing_requirements(requirements_file: str, candidates: list[str]) -> str:
    return (f"{requirements_file} (app_requirements_file) is not in the source, which has "
            f"{', '.join(candidates)}: set app_requirements_file to the one that installs the "
            "app in production")


def _pyproject(root: str) -> dict | None:
    path = os.path.join(root, "pyproject.toml")
    if not os.path.isfile(path):
        return None
    if tomllib is None:
        raise DependencyError("reading pyproject.toml needs Python 3.11 or later on the "
                              "controller")
    try:
        return tomllib.loads(_read(path).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DependencyError(f"pyproject.toml cannot be read: {exc}") from exc


def tree_digest(root: str, files: list[str]) -> str:
    digest = hashlib.sha256()
    for relpath in sorted(files):
        digest.update(relpath.encode() + b"\0")
        digest.update(hashlib.sha256(_read(os.path.join(root, relpath))).digest())
    return digest.hexdigest()


def detect(root: str, wanted: str = "auto", requirements_file: str = "requirements.txt") -> dict:
    """What the source at ``root`` declares: format, files, digest, requires-python, and for a
    plain pyproject project its dependencies and whether the project itself is built."""
    if wanted not in ("auto", *FORMATS):
        raise DependencyError(f"app_dependencies is {wanted!r}: use one of auto, "
                              f"{', '.join(FORMATS)}")
    pyproject = _pyproject(root)
    has_lock = os.path.isfile(os.path.join(root, "uv.lock"))
    has_requirements = os.path.isfile(os.path.join(root, requirements_file))
    project = (pyproject or {}).get("project") or {}
    chosen = wanted
    if wanted == "auto":
        if has_requirements:
            chosen = "requirements"
        elif pyproject is not None and has_lock:
            chosen = "uv"
        elif project:
            chosen = "pyproject"
        elif requirements_files(root):
            raise DependencyError(_missing_requirements(requirements_file,
                                                        requirements_files(root)))
        else:
            raise DependencyError(
                f"the source declares no Python dependencies: looked for {requirements_file} "
                "(app_requirements_file), pyproject.toml with uv.lock, and pyproject.toml with "
                "a [project] table; add one, or set app_requirements_file to the file you use")
    result = {"format": chosen, "requirements": "", "dependencies": [],
              "build_project": False,
              "requires_python": str(project.get("requires-python") or "")}
    if chosen == "requirements":
        if not has_requirements:
            candidates = requirements_files(root)
            raise DependencyError(
                "app_dependencies is requirements but "
                + (_missing_requirements(requirements_file, candidates) if candidates else
                   f"{requirements_file} (app_requirements_file) is not in the source, which "
                   "has no requirements file: add it, or set app_dependencies to the format "
                   "the app uses"))
        files = requirements_tree(root, os.path.normpath(requirements_file))
        result["requirements"] = files[0]
    elif chosen == "uv":
        missing = [name for name, present in (("pyproject.toml", pyproject is not None),
                                              ("uv.lock", has_lock)) if not present]
        if missing:
            raise DependencyError(f"app_dependencies is uv but {' and '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} not in the source "
                                  "(run `uv lock` and commit uv.lock)")
        files = ["pyproject.toml", "uv.lock"]
        result["build_project"] = _is_package(pyproject)
    else:
        if not project:
            raise DependencyError("app_dependencies is pyproject but the source has no "
                                  "pyproject.toml with a [project] table")
        if "dependencies" in (project.get("dynamic") or []):
            raise DependencyError("pyproject.toml declares its dependencies as dynamic: list "
                                  "them in [project] dependencies, or use a requirements file")
        files = ["pyproject.toml"]
        result["dependencies"] = [str(item) for item in project.get("dependencies") or []]
        result["build_project"] = "build-system" in (pyproject or {})
    result["files"] = files
    result["digest"] = tree_digest(root, files)
    return result


def _is_package(pyproject: dict | None) -> bool:
    """Whether uv would install the project itself (``tool.uv.package``, else a build
    system)."""
    pyproject = pyproject or {}
    explicit = ((pyproject.get("tool") or {}).get("uv") or {}).get("package")
    if explicit is not None:
        return bool(explicit)
    return "build-system" in pyproject
