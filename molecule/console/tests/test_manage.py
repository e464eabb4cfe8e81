"""One-off commands (playbooks/manage.yml) on a real host: the example app's release that
prepare.yml laid out as the app role does, reached over SSH from the controller like any
deploy, each run recorded in a deploy history of its own."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
TEST_DIR = Path(os.environ["CONSOLE_TEST_DIR"])
HOST = "slipway-molecule-console"
LOCK = "/var/lib/slipway/demo/deploy.lock"
OPEN_ORDERS = ("from production.models import WorkOrder; "
               "print(WorkOrder.objects.filter(done=False).count())")


@pytest.fixture(scope="module", autouse=True)
def twelve_open_orders(host):
    """prepare.yml made twelve open work orders; reopen them, for a second verify."""
    host.check_output("/srv/demo/bin/manage shell -c %s",
                      "from production.models import WorkOrder; "
                      "WorkOrder.objects.update(done=False)")


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """An inventory of the host in the group `app` (and a db host that is not), and a history
    store of this module's own."""
    root = tmp_path_factory.mktemp("manage")
    inventory = root / "inventories" / "molecule"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text(textwrap.dedent(f"""\
        app:
          hosts:
            {HOST}:
              ansible_host: 127.0.0.1
              ansible_port: {os.environ.get("SLIPWAY_CONSOLE_SSH_PORT", "22451")}
              ansible_user: root
              ansible_ssh_private_key_file: {TEST_DIR / "controller_ed25519"}
              ansible_ssh_common_args: >-
                -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
              ansible_python_interpreter: /usr/bin/python3
        db:
          hosts:
            db-not-an-app-host:
              ansible_host: 127.0.0.1
        all:
          vars:
            app_name: demo
        """))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               SLIPWAY_HISTORY_DB=str(root / "history.sqlite3"), ANSIBLE_FORCE_COLOR="0")
    return inventory, env


def manage(controller, *extra):
    inventory, env = controller
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/manage.yml"),
         *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, check=False)


def history(controller, *args):
    _, env = controller
    result = subprocess.run([str(BIN / "slipway-history"), *args], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def last_command_run(controller):
    runs = json.loads(history(controller, "list", "--kind", "command", "--json"))["runs"]
    return json.loads(history(controller, "show", str(runs[0]["id"]), "--json"))["run"]


def open_orders(host):
    return int(host.check_output("/srv/demo/bin/manage shell -c %s", OPEN_ORDERS).splitlines()[-1])


def test_a_dry_run_of_backfill_po_changes_nothing_and_is_recorded_as_a_command(host, controller):
    before = open_orders(host)
    result = manage(controller, "-e", 'command="backfill_po --days 7 --limit 10"',
                    "-e", "dry_run=true")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "manage.py backfill_po --dry-run --days 7 --limit 10 exited with 0" in result.stdout
    assert "work orders to backfill: 10 (days=7, limit=10)" in result.stdout
    assert "dry run: nothing was saved" in result.stdout
    assert open_orders(host) == before == 12
    run = last_command_run(controller)
    assert (run["kind"], run["status"], run["command"], run["command_rc"]) == (
        "command", "success", "backfill_po --days 7 --limit 10", 0)
    assert "work orders to backfill: 10 (days=7, limit=10)" in run["command_output"]
    assert "dry run: nothing was saved" in run["command_output"]
    assert "Output of the command" in history(controller, "show", str(run["id"]))
    assert not host.file(LOCK).exists


def test_a_command_without_dry_run_is_refused_as_a_dry_run_before_it_runs(host, controller):
    closing = ('shell -c "from production.models import WorkOrder; '
               'WorkOrder.objects.update(done=True)"')
    result = manage(controller, "-e", json.dumps({"command": closing, "dry_run": True}))

    assert result.returncode != 0
    assert "The manage.py command 'shell' does not accept --dry-run" in result.stdout
    assert open_orders(host) == 12
    run = last_command_run(controller)
    assert (run["kind"], run["status"], run["command"], run["command_rc"]) == (
        "command", "failed", closing, None)
    assert not host.file(LOCK).exists


def test_a_command_runs_for_real_without_dry_run(host, controller):
    result = manage(controller, "-e", 'command="backfill_po --days 7 --limit 5"')

    assert result.returncode == 0, result.stdout + result.stderr
    assert "backfilled: 5" in result.stdout
    assert open_orders(host) == 7
    assert last_command_run(controller)["command_output"].strip().endswith("backfilled: 5")


@pytest.mark.parametrize(("extra", "message"), [
    (["-e", 'command="python manage.py backfill_po"'], "without 'python manage.py'"),
    (["-e", 'command="backfill-po --days 7"'], "'backfill-po' is not a manage.py command name"),
    (["-e", "command=no_such_command"], "The app does not know the manage.py command"),
    (["-e", "command=backfill_po", "-e", "manage_host=db-not-an-app-host"],
     "manage_host=db-not-an-app-host is not in the group app"),
])
def test_bad_input_is_refused_before_anything_runs(host, controller, extra, message):
    result = manage(controller, *extra)

    assert result.returncode != 0
    assert message in result.stdout
    assert open_orders(host) == 7
    assert not host.file(LOCK).exists
