"""The release role knows nothing of Django or of the app role's internals (issue 14): its
tasks, templates and vars name no framework, no manage.py, no DJANGO_ variable and no private
name of the app role. Only its defaults read the app role's variables (each release_* defaults
to the app_* of the same meaning), and the steps that know Django are the app role's, plugged in
through release_steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RELEASE = ROOT / "roles" / "release"
FORBIDDEN = re.compile(r"django|manage\.py|manage-release|DJANGO_|\b__app_[a-z_]+", re.IGNORECASE)


def files() -> list[Path]:
    return sorted(path for path in RELEASE.rglob("*")
                  if path.is_file() and path.parent.name != "defaults")


@pytest.mark.parametrize("path", files(), ids=lambda path: str(path.relative_to(RELEASE)))
def test_the_release_role_names_no_framework(path: Path) -> None:
    # The collection's own modules and filters are slipway.django.*: the name of the collection.
    text = re.sub(r"slipway\.django\b", "slipway.collection", path.read_text(encoding="utf-8"))
    found = sorted({match.group(0) for match in FORBIDDEN.finditer(text)})
    assert found == [], f"{path.relative_to(ROOT)} names {found}"


def test_the_app_role_s_django_steps_are_plugged_in() -> None:
    steps = yaml.safe_load((ROOT / "roles" / "app" / "vars" / "main.yml").read_text())
    plugged = steps["__app_release_steps"]
    text = str(plugged)
    named = set(re.findall(r"'tasks_from'+: '+([a-z_]+)", text))
    assert {"django", "check", "migrate", "admin", "static", "lockdown", "restore_on_failure",
            "rollback_database_plan", "rollback_database"} <= named, named
    tasks = {path.stem for path in (ROOT / "roles" / "app" / "tasks").glob("*.yml")}
    assert named <= tasks, named - tasks


def test_the_release_role_s_stages_are_the_ones_its_tasks_run() -> None:
    stages = set()
    for path in (RELEASE / "tasks").glob("*.yml"):
        stages |= set(re.findall(r"__release_stage: ([a-z_]+)", path.read_text()))
    plugged = yaml.safe_load((ROOT / "roles" / "app" / "vars" / "main.yml").read_text())
    assert set(plugged["__app_release_steps"]) <= stages
    assert stages == {"configure", "inspect", "check", "migrate", "setup", "collect", "lockdown",
                      "switch_back", "rollback_plan", "rollback_finish"}
