"""The release of a uv project (pyproject.toml + uv.lock, no requirements.txt) is installed from
its lock: the versions uv.lock pins, not what a new resolution would pick. The last tests deploy
code changes with another app_uv_version, then with app_uv=false: each must make that release's
virtualenv its way, from the same lock."""

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

APP = "shop"
CURRENT = f"/srv/{APP}/current"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
# Another uv than the default app_uv_version (roles/app/defaults/main.yml).
OTHER_UV = "0.13.8"
RUN_TIMEOUT = 1800
# Written by prepare.yml (tests/testbed/uv_app.py): the deployed source and what its lock holds.
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
LOCK = tomllib.loads((EPHEMERAL / "uv-app" / "uv.lock").read_text())
HELD = json.loads((EPHEMERAL / "uv-app.json").read_text())


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(host) -> dict[str, str]:
    """Every distribution in the current release's virtualenv: normalized name -> version."""
    listing = host.check_output(
        f"{CURRENT}/venv/bin/python -c 'import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata[\"Name\"]: d.version for d in m.distributions()}))'")
    return {normalized(name): version for name, version in json.loads(listing).items()}


def test_the_release_record_says_its_dependencies_came_from_the_uv_lock(host):
    record = json.loads(host.file(f"{CURRENT}/.slipway-release.json").content_string)
    assert record["dependencies"] == "uv"
    assert not host.file(f"{CURRENT}/requirements.txt").exists
    assert host.file(f"{CURRENT}/uv.lock").exists


def test_every_package_in_the_release_virtualenv_is_at_the_version_the_lock_pins(host):
    locked = {normalized(entry["name"]): entry["version"] for entry in LOCK["package"]
              if normalized(entry["name"]) != "shop"}
    found = installed(host)
    assert {name: found.get(name) for name in ("django", "celery", "kombu", "pymysql")} \
        == {name: locked[name] for name in ("django", "celery", "kombu", "pymysql")}
    assert {name: version for name, version in found.items() if locked.get(name) != version} \
        == {}, "installed but not locked, or at another version than the lock's"


def test_a_package_the_lock_holds_back_is_installed_at_the_locked_version(host):
    assert HELD["locked"] != HELD["resolved"], "the lock must differ from a new resolution"
    assert installed(host)[HELD["package"]] == HELD["locked"]


def test_the_release_virtualenv_was_made_by_uv(host):
    config = host.file(f"{CURRENT}/venv/pyvenv.cfg").content_string
    assert re.search(r"^uv = \d", config, re.MULTILINE), config


def deploy_code_change(name: str, *extra: str) -> subprocess.CompletedProcess:
    """deploy.yml of a copy of the deployed source with one changed file: the same lock."""
    source = EPHEMERAL / name
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(EPHEMERAL / "uv-app", source)
    with (source / "config" / "urls.py").open("a") as urls:
        urls.write(f"# {name}: the same lock, new code.\n")
    return subprocess.run(
        ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
         str(PROJECT / "playbooks" / "deploy.yml"), "-e", f"app_source={source}", *extra],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=PROJECT)


def release_record(host) -> dict:
    return json.loads(host.file(f"{CURRENT}/.slipway-release.json").content_string)


def test_another_app_uv_version_makes_the_next_release_with_that_uv(host):
    before = release_record(host)

    result = deploy_code_change("uv-app-other-uv", "-e", f"app_uv_version={OTHER_UV}")

    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert release_record(host)["release_id"] != before["release_id"]
    config = host.file(f"{CURRENT}/venv/pyvenv.cfg").content_string
    assert re.search(rf"^uv = {re.escape(OTHER_UV)}$", config, re.MULTILINE), config
    assert installed(host)[HELD["package"]] == HELD["locked"]


def test_app_uv_false_on_the_command_line_makes_the_release_with_pip_from_the_lock(host):
    before = release_record(host)

    # As an operator types it: -e key=value makes the string "false".
    result = deploy_code_change("uv-app-pip", "-e", "app_uv=false")

    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert release_record(host)["release_id"] != before["release_id"]
    config = host.file(f"{CURRENT}/venv/pyvenv.cfg").content_string
    assert not re.search(r"^uv = ", config, re.MULTILINE), config
    assert host.file(f"{CURRENT}/venv/bin/pip").exists
    assert installed(host)[HELD["package"]] == HELD["locked"]
