"""The collection's metadata agrees with its code: what an execution environment installs
(requirements.txt, bindep.txt through meta/execution-environment.yml) covers what the plugins
import where ansible-playbook runs, the example execution environment installs this version and
its dependencies, and every version_added names a release."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())

# What runs inside ansible-playbook's process (the controller, or an execution environment).
CONTROLLER_PLUGIN_DIRS = ["action", "callback", "filter", "lookup", "test", "plugin_utils"]
# The modules the roles run on the controller (delegate_to: localhost), with their module_utils.
CONTROLLER_MODULES = {"package_source"}
# ansible-core's own dependencies: every controller has them.
ANSIBLE_CORE_IMPORTS = {"yaml", "jinja2", "cryptography", "resolvelib", "packaging"}
# Import names of the distributions requirements.txt lists.
# The collection's own Python package (pyproject.toml and src/ ship in it): an execution
# environment installs it from the collection's directory (the example's append_final).
OWN_PACKAGES = {"slipway"}
DISTRIBUTION_IMPORTS = {"psycopg2": "psycopg2", "pymysql": "pymysql", "packaging": "packaging"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _module_utils_of(path: Path) -> list[Path]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        module = node.module if isinstance(node, ast.ImportFrom) else None
        if module and ".plugins.module_utils." in module:
            found.append(ROOT / "plugins" / "module_utils" / f"{module.rsplit('.', 1)[1]}.py")
    return found


def _controller_files() -> list[Path]:
    files = [path for directory in CONTROLLER_PLUGIN_DIRS
             for path in sorted((ROOT / "plugins" / directory).glob("*.py"))]
    for module in sorted(CONTROLLER_MODULES):
        path = ROOT / "plugins" / "modules" / f"{module}.py"
        files += [path, *_module_utils_of(path)]
    # The collection's package as the callback uses it (the console has its own requirements).
    package = ROOT / "src" / "slipway"
    files += [*sorted(package.glob("*.py")), *sorted((package / "history").glob("*.py"))]
    return files


def _requirements() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines
                    if line.strip() and not line.startswith("#")]
    return {requirement.name.lower(): requirement for requirement in requirements}


def _tasks(tasks):
    for task in tasks or []:
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section))


def test_the_modules_run_on_the_controller_are_the_ones_listed():
    delegated = set()
    for path in (ROOT / "roles").glob("*/tasks/*.yml"):
        for task in _tasks(yaml.safe_load(path.read_text())):
            if task.get("delegate_to") == "localhost":
                delegated.update(key.removeprefix("slipway.django.") for key in task
                                 if key.startswith("slipway.django."))
    assert delegated == CONTROLLER_MODULES


def test_requirements_txt_covers_every_import_on_the_controller_and_nothing_else():
    imported = set()
    for path in _controller_files():
        imported |= {name for name in _imports(path)
                     if name not in sys.stdlib_module_names and name != "__future__"
                     and name not in ("ansible", "ansible_collections")}
    requirements = _requirements()
    listed = {DISTRIBUTION_IMPORTS[name] for name in requirements}
    missing = imported - ANSIBLE_CORE_IMPORTS - OWN_PACKAGES - listed
    assert not missing, f"imported on the controller, not in requirements.txt: {missing}"
    unused = {name for name in requirements if DISTRIBUTION_IMPORTS[name] not in imported}
    assert not unused, f"in requirements.txt, imported by no controller-side plugin: {unused}"
    # The deploy history's store drivers are what an execution environment needs most.
    assert {"psycopg2", "pymysql"} <= set(requirements)
    assert "django" not in requirements and "psycopg2-binary" not in requirements


def test_the_execution_environment_metadata_names_the_files_at_the_root():
    metadata = yaml.safe_load((ROOT / "meta" / "execution-environment.yml").read_text())
    assert metadata["version"] == 1
    assert metadata["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    bindep = [line for line in (ROOT / "bindep.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    packages = {line.split()[0]: line for line in bindep}
    # psycopg2 is built from source: its headers and compiler in the build stage only.
    assert re.search(r"\[platform:rpm compile\]", packages["libpq-devel"])
    assert "compile" not in packages["libpq"] and "git" in packages


def test_the_example_execution_environment_installs_this_version_and_its_dependencies():
    example = ROOT / "examples" / "execution-environment"
    definition = yaml.safe_load((example / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert (example / definition["dependencies"]["galaxy"]).is_file()
    collections = {entry["name"]: entry["version"] for entry in
                   yaml.safe_load((example / "requirements.yml").read_text())["collections"]}
    assert collections.pop(f"{GALAXY['namespace']}.{GALAXY['name']}") == GALAXY["version"]
    assert collections == GALAXY["dependencies"]
    # The callback's package, from the collection's own directory.
    steps = " ".join(definition["additional_build_steps"]["append_final"])
    assert "pip install" in steps and "/ansible_collections/slipway/django" in steps
    # The image runs the ansible-core and ansible-runner the tests run.
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    for name in ("ansible_core", "ansible_runner"):
        assert definition["dependencies"][name]["package_pip"] in pins


def _released_versions() -> set[str]:
    changelog = yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())
    return set(changelog["releases"]) | {GALAXY["version"]}


def _version_added(node, where: str):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "version_added":
                yield where, str(value)
            else:
                yield from _version_added(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _version_added(value, f"{where}[{index}]")


def _documentation() -> list[tuple[str, object]]:
    docs = []
    for path in sorted((ROOT / "plugins").glob("*/*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id in ("DOCUMENTATION", "RETURN")):
                docs.append((f"{path.relative_to(ROOT)}:{node.targets[0].id}",
                             yaml.safe_load(node.value.value)))
    for path in sorted((ROOT / "plugins").glob("*/*.yml")):
        docs.append((str(path.relative_to(ROOT)), yaml.safe_load(path.read_text())))
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        docs.append((str(path.relative_to(ROOT)), yaml.safe_load(path.read_text())))
    return docs


def test_every_version_added_names_a_release_or_the_coming_one():
    released = _released_versions()
    found = [entry for where, doc in _documentation() for entry in _version_added(doc, where)]
    assert len(found) > 40
    wrong = [f"{where}: {value}" for where, value in found if value not in released]
    assert not wrong, f"version_added must be one of {sorted(released)}: {wrong}"
