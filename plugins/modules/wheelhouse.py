#!/usr/bin/python
# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wheelhouse
short_description: Build an app's wheels on a host, with that host's Python, and cache them
version_added: "0.2.0"
description:
  - Builds every wheel an app needs (its whole resolved dependency set) on the host it runs on,
    with the interpreter O(python), from a package index, into O(dest)C(/)O(key)C(.tar).
  - The archive holds the wheels, C(slipway-requirements.txt) (one exact pin or path per wheel,
    what a host installs with C(--no-index)) and, under C(tools/), the wheels of O(tools) (such
    as uv) for the hosts that install the app.
  - An archive that exists for O(key) is reused as it is; nothing runs.
  - "The dependency formats: V(requirements) (a pip requirements file and every file it
    includes), V(uv) (C(pyproject.toml) + C(uv.lock), exported with C(uv export --frozen):
    the lock is never re-resolved), V(pyproject) (the C([project]) dependencies, and the project
    itself when O(build_project))."
  - Uses pip (C(pip wheel)) in a build virtualenv of O(python) kept under O(dest), and uv for
    the lock export. No private pip API is used.
  - When the build fails, the error says why in the user's terms - the Python version the
    dependencies need (from pip's C(Requires-Python) report), or the index that could not be
    reached - instead of pip's whole output.
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the archive would be built.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  python:
    description:
      - The interpreter the wheels are for (the one the app's virtualenvs are made with).
    type: path
    required: true
  source:
    description:
      - The directory holding the app's source (its dependency files, and the project when
        O(build_project)).
    type: path
    required: true
  format:
    description:
      - How the source declares its dependencies.
    type: str
    choices: [requirements, uv, pyproject]
    default: requirements
  requirements:
    description:
      - With O(format=requirements), the requirements file, relative to O(source).
    type: str
    default: requirements.txt
  dependencies:
    description:
      - With O(format=pyproject), the project's dependencies (PEP 508 strings).
    type: list
    elements: str
    default: []
  build_project:
    description:
      - Also build the project in O(source) itself into a wheel (C(pip install .)).
    type: bool
    default: false
  dest:
    description:
      - The cache directory, root only, holding build virtualenvs and archives.
    type: path
    required: true
  key:
    description:
      - The archive's name, which must change whenever what it holds would (the digest of the
        dependency files, the interpreter's version, the platform and the O(tools)).
    type: str
    required: true
  find_links:
    description:
      - A directory of wheels on the host to build from instead of an index (C(--no-index)). This
        is the offline path, for hosts that may not reach any index.
    type: path
  index_url:
    description:
      - The package index (ignored with O(find_links)).
    type: str
    default: https://pypi.org/simple
  extra_index_urls:
    description:
      - More indexes, searched too.
    type: list
    elements: str
    default: []
  ca_bundle:
    description:
      - A CA bundle on the host for HTTPS to the indexes (a private mirror's CA, or a proxy's).
    type: path
  tools:
    description:
      - Requirements of tools added under C(tools/) in the archive, for instance C(uv==0.9.5).
        With O(find_links), a tool whose wheel is not there is left out (RV(tools_missing)).
      - With O(format=uv), the uv given here is the one that exports the lock (without one, any uv,
        the one an earlier build installed or else the newest the index has).
    type: list
    elements: str
    default: []
  ensure:
    description:
      - Requirements the app must have, such as its app server (C(gunicorn==23.0.0)). Each one
        whose distribution the app's resolved dependencies lack is resolved together with them
        and added to the wheelhouse (RV(added)); one the app already has is left as the app pins
        it. The O(key) must change with this list.
    type: list
    elements: str
    default: []
  timeout:
    description:
      - Seconds pip waits for the index on each request.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Build the wheels on the first app host
  slipway.django.wheelhouse:
    python: /usr/bin/python3
    source: /srv/shop/releases/3f2a9c1b7d0e
    requirements: requirements/production.txt
    dest: /var/cache/slipway/shop/wheelhouse
    key: 1b4f0e985197-cp311-x86_64
    tools: [uv==0.9.5]
    ensure: [gunicorn==23.0.0]
  delegate_to: "{{ groups['app'][0] }}"
  run_once: true
"""

RETURN = r"""
archive:
  description: The archive of the wheels on the host.
  returned: always
  type: str
  sample: /var/cache/slipway/shop/wheelhouse/1b4f0e985197-cp311-x86_64.tar
wheels:
  description: How many wheels of the app it holds (tools not counted); 0 in check mode when it
    would be built.
  returned: always
  type: int
  sample: 14
tools:
  description: The file names of the wheels under C(tools/) in the archive.
  returned: always
  type: list
  elements: str
  sample: [uv-0.9.5-py3-none-manylinux_2_17_x86_64.whl]
tools_missing:
  description: The O(tools) that could not be added (only with O(find_links)).
  returned: always
  type: list
  elements: str
  sample: []
added:
  description: The O(ensure) requirements that the app's dependencies lacked and that were added
    to the wheelhouse (also when the archive was built by an earlier run).
  returned: always
  type: list
  elements: str
  sample: [gunicorn==23.0.0]
python_version:
  description: The version of O(python).
  returned: always
  type: str
  sample: 3.11.2
"""

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

# The build runs from plain functions without an AnsibleModule (the unit tests call them
# directly), hence subprocess rather than run_command.
# pylint: disable=ansible-bad-function

REQUIREMENTS_NAME = "slipway-requirements.txt"
ADDED_NAME = "slipway-added.txt"
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
_REQUIRES_PYTHON = re.compile(
    r"Requires-Python\s*([<>=!~][^;,'\"\s)]*(?:,\s*[<>=!~][^;,'\"\s)]*)*)")
_NETWORK = ("Could not fetch URL", "Failed to establish a new connection",
            "Name or service not known", "Temporary failure in name resolution",
            "CERTIFICATE_VERIFY_FAILED", "ProxyError", "Connection refused",
            "Max retries exceeded", "Network is unreachable", "timed out")


class BuildError(Exception):
    """The wheels cannot be built; the message says why and what to do."""


def python_version(python: str) -> str:
    try:
        result = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"the interpreter {python} does not run on this host: {exc}") from exc
    return result.stdout.strip()


def canonical(name: str) -> str:
    """A distribution's name as packaging compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(requirements: list[str], directory: str) -> list[str]:
    """The requirements whose distribution has no wheel in directory."""
    present = {canonical(match.group("name")) for match in map(_WHEEL.match, os.listdir(directory))
               if match}
    found = [(requirement, _REQUIREMENT_NAME.match(requirement)) for requirement in requirements]
    return [requirement for requirement, name in found
            if name and canonical(name.group(1)) not in present]


def wheel_pins(directory: str) -> list[str]:
    """One line per wheel in directory: ``name==version``, sorted."""
    pins = []
    for name in sorted(os.listdir(directory)):
        match = _WHEEL.match(name)
        if match:
            pins.append(f"{match.group('name').replace('_', '-')}=={match.group('version')}")
    return pins


def explain(output: str, python: str, version: str, index_url: str) -> str:
    """pip's failure in the user's terms."""
    needs = sorted(set(_REQUIRES_PYTHON.findall(output)))
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")
              and "require a different python version" not in line]
    lines = (errors or output.strip().splitlines())[-3:]
    tail = " / ".join(line if len(line) <= 300 else line[:300] + "..." for line in lines)
    if needs:
        return (f"the app's dependencies need another Python: pip found only releases requiring "
                f"Python {' or '.join(needs)}, and the build interpreter {python} is {version}. "
                "Set app_python to a version they accept (for example app_python: '3.13'; "
                "with app_python_install: true, uv installs it where the host lacks it). "
                f"pip said: {tail}")
    if any(marker in output for marker in _NETWORK):
        return (f"the build host could not reach the package index {index_url}: {tail}. Set "
                "app_pip_index_url (and app_pip_ca_bundle) to an index this host reaches, or "
                "build the wheels yourself and set app_wheelhouse")
    return f"pip could not build the app's wheels with {python} ({version}): {tail}"


def probe_index(index_url: str, ca_bundle: str | None, timeout: int) -> None:
    """Fail early, with a clear message, when the index does not answer at all."""
    url = index_url.rstrip("/") + "/pip/"
    try:
        open_url(url, timeout=timeout, ca_path=ca_bundle, follow_redirects="all").close()
        return
    except urllib.error.HTTPError:
        return  # it answered: a private index may not serve pip itself
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BuildError(
            f"the build host cannot reach the package index {index_url} ({exc}). Set "
            "app_pip_index_url (and app_pip_ca_bundle for a private CA) to an index this host "
            "reaches, or build the wheels for the hosts yourself and set app_wheelhouse to "
            "their directory") from exc


class Builder:
    def __init__(self, params: dict, run) -> None:
        self.params = params
        self.run = run
        self.tools_missing: list[str] = []
        self.added: list[str] = []

    def pip_options(self) -> list[str]:
        params = self.params
        options = ["--timeout", str(params["timeout"]), "--disable-pip-version-check",
                   "--no-input", "--progress-bar", "off"]
        if params.get("find_links"):
            return ["--no-index", "--find-links", params["find_links"], *options]
        options += ["--index-url", params["index_url"]]
        for url in params["extra_index_urls"]:
            options += ["--extra-index-url", url]
        if params.get("ca_bundle"):
            options += ["--cert", params["ca_bundle"]]
        return options

    def build_env(self, version: str) -> str:
        """A virtualenv of the build interpreter, kept for the next builds."""
        env = os.path.join(self.params["dest"], f"buildenv-{version}")
        if not os.path.exists(os.path.join(env, "bin", "pip")):
            shutil.rmtree(env, ignore_errors=True)
            self.checked([self.params["python"], "-m", "venv", env],
                         f"could not create a virtualenv with {self.params['python']}; on "
                         "Debian, install python3-venv (the python role does)")
        return env

    def checked(self, argv: list[str], message: str, cwd: str | None = None) -> str:
        rc, out, err = self.run(argv, cwd)
        if rc != 0:
            raise BuildError(f"{message}: {(err or out).strip()[-2000:]}")
        return out

    def pip_wheel(self, env: str, args: list[str], into: str, version: str,
                  cwd: str | None = None) -> None:
        argv = [os.path.join(env, "bin", "pip"), "wheel", "--wheel-dir", into,
                *self.pip_options(), *args]
        rc, out, err = self.run(argv, cwd)
        if rc != 0:
            raise BuildError(explain(out + "\n" + err, self.params["python"], version,
                                     self.params["index_url"]))

    def build(self, archive: str, version: str) -> None:
        params = self.params
        source = params["source"]
        env = self.build_env(version)
        work = tempfile.mkdtemp(prefix=".build-", dir=params["dest"])
        try:
            wheels = os.path.join(work, "wheels")
            os.makedirs(os.path.join(wheels, "tools"))
            for tool in params["tools"]:
                try:
                    self.pip_wheel(env, [tool], os.path.join(wheels, "tools"), version)
                except BuildError:
                    if not params.get("find_links"):
                        raise
                    self.tools_missing.append(tool)
            spec = os.path.join(work, "requirements.txt")
            if params["format"] == "requirements":
                args = ["--requirement", os.path.join(source, params["requirements"])]
                cwd = source
            elif params["format"] == "uv":
                uv = self.uv(env, wheels)
                self.checked(
                    [uv, "export", "--frozen", "--no-dev", "--no-emit-project",
                     "--format", "requirements-txt", "--no-header", "--output-file", spec,
                     "--project", source],
                    "uv export --frozen could not read uv.lock (is it in step with "
                    "pyproject.toml? run `uv lock` and commit it)")
                args, cwd = ["--requirement", spec], source
            else:
                with open(spec, "w", encoding="utf-8") as handle:
                    handle.write("".join(f"{line}\n" for line in params["dependencies"]))
                args, cwd = ["--requirement", spec], source
            self.pip_wheel(env, args, wheels, version, cwd)
            self.added = missing(params["ensure"], wheels)
            if self.added:
                # Resolved with the app's own requirements, so that the versions agree.
                self.pip_wheel(env, [*args, *self.added], wheels, version, cwd)
            with open(os.path.join(wheels, ADDED_NAME), "w", encoding="utf-8") as handle:
                handle.write("".join(f"{requirement}\n" for requirement in self.added))
            if params["build_project"]:
                self.pip_wheel(env, ["--no-deps", source], wheels, version)
            pins = wheel_pins(wheels)
            with open(os.path.join(wheels, REQUIREMENTS_NAME), "w", encoding="utf-8") as handle:
                handle.write("".join(f"{pin}\n" for pin in pins))
            partial = archive + ".partial"
            with tarfile.open(partial, "w") as tar:
                for name in sorted(os.listdir(wheels)):
                    tar.add(os.path.join(wheels, name), arcname=name)
            os.chmod(partial, 0o600)
            os.replace(partial, archive)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def uv(self, env: str, wheels: str) -> str:
        """uv in the build virtualenv, at the version O(tools) pins, from the tools' wheels (or
        the index). The build virtualenv outlives a build: pip replaces the uv an earlier build
        installed when the pin changed, and leaves one that meets it."""
        tools = os.path.join(wheels, "tools")
        wanted = [tool for tool in self.params["tools"] if re.match(r"^uv\b", tool)] or ["uv"]
        args = ["--no-index", "--find-links", tools] if os.listdir(tools) else self.pip_options()
        self.checked([os.path.join(env, "bin", "pip"), "install", "--quiet", *args, *wanted],
                     "could not install uv in the build virtualenv")
        return os.path.join(env, "bin", "uv")


def archive_contents(archive: str) -> dict:
    with tarfile.open(archive) as tar:
        names = [name.lstrip("./") for name in tar.getnames()]
        added = tar.extractfile(ADDED_NAME).read().decode().split() if ADDED_NAME in names else []
    return {"wheels": sum(1 for name in names if name.endswith(".whl") and "/" not in name),
            "tools": sorted(name.split("/", 1)[1] for name in names
                            if name.startswith("tools/") and name.endswith(".whl")),
            "added": added}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "python": {"type": "path", "required": True},
            "source": {"type": "path", "required": True},
            "format": {"type": "str", "default": "requirements",
                       "choices": ["requirements", "uv", "pyproject"]},
            "requirements": {"type": "str", "default": "requirements.txt"},
            "dependencies": {"type": "list", "elements": "str", "default": []},
            "build_project": {"type": "bool", "default": False},
            "dest": {"type": "path", "required": True},
            "key": {"type": "str", "required": True, "no_log": False},
            "find_links": {"type": "path"},
            "index_url": {"type": "str", "default": "https://pypi.org/simple"},
            "extra_index_urls": {"type": "list", "elements": "str", "default": []},
            "ca_bundle": {"type": "path"},
            "tools": {"type": "list", "elements": "str", "default": []},
            "ensure": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", params["key"]):
        module.fail_json(msg=f"key {params['key']!r} must be a file name (letters, digits, . _ -)")
    archive = os.path.join(params["dest"], params["key"] + ".tar")
    result = {"changed": False, "archive": archive, "wheels": 0, "tools": [],
              "tools_missing": [], "added": []}
    try:
        result["python_version"] = python_version(params["python"])
        if os.path.exists(archive):
            result.update(archive_contents(archive))
            module.exit_json(**result)
        result["changed"] = True
        if module.check_mode:
            module.exit_json(**result)
        os.makedirs(params["dest"], mode=0o700, exist_ok=True)
        if not params.get("find_links"):
            probe_index(params["index_url"], params.get("ca_bundle"), params["timeout"])

        def run(argv, cwd):
            return module.run_command(argv, cwd=cwd,
                                      environ_update={"PIP_NO_INPUT": "1",
                                                      "PIP_DISABLE_PIP_VERSION_CHECK": "1"})

        builder = Builder(params, run)
        builder.build(archive, result["python_version"])
        result.update(archive_contents(archive), tools_missing=builder.tools_missing)
    except BuildError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
