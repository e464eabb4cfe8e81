"""The console host installs exactly roles/console/files/requirements.txt (pip --no-deps): that
pinned set must satisfy what slipway-tools declares, or the role's `pip check` fails on a host."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "roles" / "console" / "files" / "requirements.txt"


def pinned() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line!r} is not pinned with =="
            versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def declared() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


@pytest.mark.parametrize("dependency", declared())
def test_the_console_lock_pins_each_dependency_of_slipway_tools_to_a_matching_version(dependency):
    requirement = Requirement(dependency)
    version = pinned().get(canonicalize_name(requirement.name))
    assert version is not None, f"{requirement.name} is missing from {LOCK.relative_to(ROOT)}"
    assert requirement.specifier.contains(version, prereleases=True), (
        f"{LOCK.relative_to(ROOT)} pins {requirement.name}=={version}, "
        f"outside slipway-tools' {requirement.specifier}")


def test_the_console_lock_pins_the_ansible_of_the_controller():
    controller = {canonicalize_name(Requirement(line).name): str(Requirement(line).specifier)
                  for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
                  if line.strip() and not line.startswith("#")}
    versions = pinned()
    for name in ("ansible", "ansible-core"):
        assert f"=={versions[name]}" == controller[name]
