"""The app role's deploy and rollback in check mode on this machine (two app hosts, both local):
prepare and release as deploy.yml runs them, as two plays, with the tags that need no database
(build, static, restart), and playbooks/rollback.yml to the release that runs, against releases
laid out by the test. systemctl is a stand-in that finds every unit running (check mode starts
nothing); the test's files are written with check_mode: false.

It proves what the unit guard (tests/unit/roles/test_app_state_facts.py) cannot: that the one
fact, release_state, is built as the role runs, carries from the prepare play to the release play
(and through the rollback's plays), holds the run's and the release's shared values on every
host, and that the hooks' app_release is its projection with the documented keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
HOSTS = ("app1", "app2")
SYSTEMCTL = """#!/bin/sh
# Every unit is loaded, enabled and running.
for arg in "$@"; do last=$arg; done
case " $* " in
  *" show "*) printf 'Id=%s\\nLoadState=loaded\\nActiveState=active\\nSubState=running\\n' "$last"
              echo UnitFileState=enabled;;
  *" is-enabled "*) echo enabled;;
  *" is-active "*) echo active;;
esac
exit 0
"""
HOOK_KEYS = {"stage", "app", "environment", "id", "path", "previous", "serving", "root", "python",
             "manage", "run", "user"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("app-check")
    inventory = work / "inventories" / "check"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "hooks").mkdir()
    hosts = "\n".join(f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}"
                      for host in HOSTS)
    (inventory / "hosts.ini").write_text(f"[app]\n{hosts}\n[db]\napp1\n")
    settings = {
        "slipway_environment": "check", "app_name": "slipcheck",
        "app_source": str(ROOT / "examples" / "app"), "app_root": str(work / "srv"),
        "app_log_dir": str(work / "log"), "app_build_cache": str(work / "cache"),
        "app_controller_cache": str(work / "controller"),
        "app_deploy_lock_path": str(work / "lock" / "deploy.lock"),
        "app_backup_dir": str(work / "backups"), "app_python_install_dir": str(work / "python"),
        "app_secret_key": "not-a-secret", "app_db_password": "not-a-secret",
        "app_redis_password": "not-a-secret", "app_admin_create": False,
        "app_hooks": {"before_build": "hooks/record.yml", "after_switch": "hooks/record.yml",
                      "after_rollback": "hooks/record.yml"},
    }
    (inventory / "group_vars" / "all.yml").write_text(json.dumps(settings))
    (inventory / "hooks" / "record.yml").write_text(textwrap.dedent(f"""\
        - name: Keep the hook's facts, and the state they come from
          ansible.builtin.copy:
            content: "{{{{ {{'app_release': app_release, 'state': release_state}} | to_json }}}}"
            dest: "{work}/hook-{{{{ inventory_hostname }}}}-{{{{ app_release.stage }}}}.json"
            mode: "0600"
          delegate_to: localhost
          check_mode: false
        """))
    (work / "bin").mkdir()
    (work / "bin" / "systemctl").write_text(SYSTEMCTL)
    (work / "bin" / "systemctl").chmod(0o755)
    keep_state = textwrap.dedent(f"""\
        - name: Keep the state after the play
          ansible.builtin.copy:
            content: "{{{{ release_state | to_json }}}}"
            dest: "{work}/state-{{{{ inventory_hostname }}}}-{{{{ __stage }}}}.json"
            mode: "0600"
          delegate_to: localhost
          check_mode: false
          vars:
            __stage: STAGE
          tags: [always]
        """)
    playbook = work / "deploy.yml"
    playbook.write_text(textwrap.dedent("""\
        - name: Prepare the release
          hosts: app
          gather_facts: false
          tasks:
            - name: Prepare the release
              ansible.builtin.import_role:
                name: slipway.django.app
                tasks_from: prepare
        {prepared}
        - name: Switch the hosts
          hosts: app
          gather_facts: false
          serial: 1
          tasks:
            - name: Switch to the release
              ansible.builtin.import_role:
                name: slipway.django.app
                tasks_from: release
        {released}
        """).format(
            prepared=textwrap.indent(keep_state.replace("STAGE", "prepared"), " " * 4),
            released=textwrap.indent(keep_state.replace("STAGE", "released"), " " * 4)))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "PATH": f"{work / 'bin'}:{VENV_BIN}:{os.environ['PATH']}", "HOME": str(work),
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.default", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory / "hosts.ini"), str(playbook),
         "--check", "--tags", "build,static,restart"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    # A rollback to the release that runs (r1; r0 ran before it), in its own app root.
    root = work / "rollback"
    for release, day in (("r0", "01"), ("r1", "02")):
        (root / "releases" / release).mkdir(parents=True)
        (root / "releases" / release / ".slipway-release.json").write_text(json.dumps(
            {"release_id": release, "commit": f"commit-{release}", "branch": "main",
             "built_at": f"2026-{day}-01T00:00:00Z"}))
        (root / "releases" / release / ".slipway-status.json").write_text(json.dumps(
            {"status": "succeeded", "deployed_at": f"2026-{day}-01T00:00:00Z", "migrations": {}}))
    (root / "current").symlink_to(root / "releases" / "r1")
    rollback = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory / "hosts.ini"),
         str(ROOT / "playbooks" / "rollback.yml"), "--check", "-e", "release=r1",
         "-e", f"app_root={root}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert rollback.returncode == 0, rollback.stdout[-6000:] + rollback.stderr[-3000:]

    def read(name: str) -> dict:
        return json.loads((work / name).read_text())

    return {"work": work, "output": proc.stdout,
            "prepared": {host: read(f"state-{host}-prepared.json") for host in HOSTS},
            "released": {host: read(f"state-{host}-released.json") for host in HOSTS},
            "hook": {host: read(f"hook-{host}-before_build.json") for host in HOSTS},
            "switched": {host: read(f"hook-{host}-after_switch.json") for host in HOSTS},
            "rolled_back": {host: read(f"hook-{host}-after_rollback.json") for host in HOSTS}}


def test_the_state_holds_the_run_and_the_release(run: dict) -> None:
    for host in HOSTS:
        state = run["prepared"][host]
        assert state["app"] == "slipcheck"
        assert state["environment"] == "check"
        assert len(state["run_id"]) == 32
        assert state["dir"] == f"{run['work']}/srv/releases/{state['id']}"
        assert state["preview"] is True and state["recorded"] is False
        assert state["status"] == "new" and state["previous"] is None
        assert state["up_to_date"] is False and state["settled"] is False
        assert state["source"]["dependencies"]["format"] == "requirements"
        assert state["python"]["path"] and state["python"]["version"].count(".") == 2
        assert state["wheelhouse"]["dir"].endswith("/" + state["wheelhouse"]["key"])
        assert state["prepared"] is True


def test_the_shared_values_are_the_same_on_every_host(run: dict) -> None:
    states = [run["prepared"][host] for host in HOSTS]
    for key in ("run_id", "id", "source"):
        assert len({json.dumps(state[key]) for state in states}) == 1, key
    assert len({state["wheelhouse"]["key"] for state in states}) == 1


def test_the_state_carries_into_the_release_play(run: dict) -> None:
    for host in HOSTS:
        prepared, released = run["prepared"][host], run["released"][host]
        # The release play only adds to it.
        assert {key: released[key] for key in prepared} == prepared
        assert released["built"] is False
        assert released["units_changed"] in (True, False)
        # No slot served before: the release starts in blue and nginx is pointed at it.
        assert released["slot"]["live"] == ""
        assert released["slot"]["next"] == "blue"
        assert released["slot"]["switch"] is True and released["slot"]["switched"] is True
        assert released["slot"]["current_changed"] is True
        assert run["switched"][host]["state"] == released


def test_the_hooks_get_app_release_from_the_state(run: dict) -> None:
    for host in HOSTS:
        hook, state = run["hook"][host]["app_release"], run["prepared"][host]
        assert set(hook) == HOOK_KEYS
        assert hook["stage"] == "before_build"
        assert (hook["app"], hook["environment"]) == ("slipcheck", "check")
        assert (hook["id"], hook["path"]) == (state["id"], state["dir"])
        assert hook["serving"] == state["id"]
        assert hook["previous"] == ""
        assert hook["python"] == state["dir"] + "/venv/bin/python"
        assert hook["manage"] == f"{run['work']}/srv/bin/manage-release {state['dir']}"
        assert hook["user"] == "slipcheck"


def test_the_rollback_carries_its_state_through_its_plays(run: dict) -> None:
    run_ids = set()
    for host in HOSTS:
        hook, state = run["rolled_back"][host]["app_release"], run["rolled_back"][host]["state"]
        run_ids.add(state["run_id"])
        root = f"{run['work']}/rollback"
        assert (state["id"], state["previous"], state["dir"]) == ("r1", "r1", f"{root}/releases/r1")
        assert state["preview"] is False and state["recorded"] is True and state["built"] is True
        assert state["rollback"]["newer_dir"] == f"{root}/releases/r1"
        assert state["rollback"]["target_record"]["commit"] == "commit-r1"
        assert state["rollback"]["unapply"] == []
        assert "restore_backup" not in state["rollback"]
        assert state["slot"]["switch"] is True
        assert set(hook) == HOOK_KEYS
        assert (hook["stage"], hook["id"], hook["previous"], hook["serving"]) == (
            "after_rollback", "r1", "r1", "r1")
    assert len(run_ids) == 1
