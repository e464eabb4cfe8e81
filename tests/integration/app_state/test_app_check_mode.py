"""The app role's deploy in check mode on this machine (two app hosts, both local): prepare and
release as deploy.yml runs them, as two plays, with the tags that need no database or systemd
(build, static). Check mode changes nothing; the test files are written with check_mode: false.

It proves what the unit guard (tests/unit/roles/test_app_state_facts.py) cannot: that the one
fact, __app_state, is built as the role runs, carries from the prepare play to the release play,
holds the run's and the release's shared values on every host, and that the hooks' app_release
is its projection with the documented keys."""

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
HOOK_KEYS = {"stage", "app", "environment", "id", "path", "previous", "serving", "root", "python",
             "manage", "user"}


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
        "app_hooks": {"before_build": "hooks/record.yml"},
    }
    (inventory / "group_vars" / "all.yml").write_text(json.dumps(settings))
    (inventory / "hooks" / "record.yml").write_text(textwrap.dedent(f"""\
        - name: Keep the hook's facts
          ansible.builtin.copy:
            content: "{{{{ app_release | to_json }}}}"
            dest: "{work}/hook-{{{{ inventory_hostname }}}}.json"
            mode: "0600"
          delegate_to: localhost
          check_mode: false
        """))
    keep_state = textwrap.dedent(f"""\
        - name: Keep the state after the play
          ansible.builtin.copy:
            content: "{{{{ __app_state | to_json }}}}"
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
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(work),
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.default", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory / "hosts.ini"), str(playbook),
         "--check", "--tags", "build,static"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]

    def read(name: str) -> dict:
        return json.loads((work / name).read_text())

    return {"work": work, "output": proc.stdout,
            "prepared": {host: read(f"state-{host}-prepared.json") for host in HOSTS},
            "released": {host: read(f"state-{host}-released.json") for host in HOSTS},
            "hook": {host: read(f"hook-{host}.json") for host in HOSTS}}


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


def test_the_hooks_get_app_release_from_the_state(run: dict) -> None:
    for host in HOSTS:
        hook, state = run["hook"][host], run["prepared"][host]
        assert set(hook) == HOOK_KEYS
        assert hook["stage"] == "before_build"
        assert (hook["app"], hook["environment"]) == ("slipcheck", "check")
        assert (hook["id"], hook["path"]) == (state["id"], state["dir"])
        assert hook["serving"] == state["id"]
        assert hook["previous"] == ""
        assert hook["python"] == state["dir"] + "/venv/bin/python"
        assert hook["manage"] == f"{run['work']}/srv/bin/manage-release {state['dir']}"
        assert hook["user"] == "slipcheck"
