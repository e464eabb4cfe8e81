"""Update v1 -> v2, roll back to v1, then a v3 whose health gate fails, each under load. The
restore scenario goes on from v1 with the irreversible migration and the database restores.

The tests run in this order and each starts from the state the previous one left. Every
playbook run is a real ansible-playbook on the scenario's inventory, while a bounded load
generator sends requests to the container's nginx published on 127.0.0.1. Throughout, a sampler
inside the container records every process command line, as any local user could read them;
the last test looks for the app's secrets in them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "testbed"))

from deploy_steps import (  # noqa: E402
    APP,
    ROOT,
    Scenario,
    add_line_one,
    applied,
    assert_no_failed_request,
    assert_no_secret_seen,
    assert_workers_overlapped,
    backups,
    command_lines_fixture,
    current,
    health_status,
    line_name,
    live_slot,
    lock_is_free,
    manage,
    output,
    status,
    tables,
)

SCENARIO = Scenario("slipway-molecule-update")
# Each app keeps its own provisioning records.
PROVISION_STATE = "/var/lib/slipway/provision/shop"
release_id = SCENARIO.release_id

command_lines = command_lines_fixture(SCENARIO)


def test_v1_runs_and_its_deploy_is_recorded(host):
    v1 = release_id("v1")
    assert current(host) == v1
    record = status(host, v1)
    assert record["status"] == "succeeded"
    assert "production.0001_initial" in record["migrations"]
    add_line_one(host)


def python_minor(version_line: str) -> tuple[int, int]:
    """(3, 13) from "3.13.5 ..." (a version first on the line)."""
    major, minor = version_line.split()[0].split(".")[:2]
    return int(major), int(minor)


# The proof that a controller whose Python minor differs from the hosts' deploys: the v1 deploy
# above and the updates below ran from this controller (3.11 on the test bed) onto Debian 13's
# Python 3.13, which runs the release's virtualenv.
def test_the_controller_python_minor_differs_from_the_hosts_it_deploys_to(host):
    ansible_version = subprocess.run(["ansible-playbook", "--version"], capture_output=True,
                                     text=True, check=True).stdout
    playbook_python = python_minor(ansible_version.split("python version = ", 1)[1])
    assert playbook_python == sys.version_info[:2]
    host_python = python_minor(host.check_output("/usr/bin/python3 --version").split()[1])
    release_python = python_minor(host.check_output(
        f"{ROOT}/current/venv/bin/python --version").split()[1])

    assert release_python == host_python
    if playbook_python == host_python:
        # A Debian 13 controller runs the hosts' minor: this proof needs a Debian 12 one (CI).
        pytest.skip(f"the controller runs Python {playbook_python}, the hosts' minor")
    assert playbook_python != host_python


def test_a_second_deploy_stops_at_once_and_names_the_lock_holder(host):
    lock = f"/var/lib/slipway/{APP}/deploy.lock"
    holder = {"run_id": "run-held-elsewhere", "user": "alice", "controller": "ops-laptop",
              "controller_pid": 4242, "playbook": "Deploy", "taken_at": "2026-11-23T10:00:00Z"}
    host.run(f"mkdir -p /var/lib/slipway/{APP} && echo {json.dumps(json.dumps(holder))} > {lock}")
    try:
        result = SCENARIO.deploy("v2")
    finally:
        host.run(f"rm -f {lock}")
    assert "The release running before (" + release_id("v1") + ") still serves" in output(result)
    assert result.returncode != 0
    assert "Another deploy holds the lock" in output(result)
    assert "run run-held-elsewhere (alice on ops-laptop, pid 4242" in output(result)
    assert current(host) == release_id("v1")
    assert not host.file(f"{ROOT}/releases/{release_id('v2')}").exists, \
        "nothing is built before the lock is taken"


def test_update_to_v2_under_load_drops_no_request(host):
    v1, v2 = release_id("v1"), release_id("v2")

    nginx_record = json.loads(host.file(f"{PROVISION_STATE}/nginx.json").content_string)
    slot_before = live_slot(host)

    # One provisioning input changes (nginx's body size); the other roles' inputs do not.
    result, summary = SCENARIO.under_load("deploy.yml", "/health/", "-e",
                                          f"app_source={SCENARIO.versions / 'v2'}",
                                          "-e", "nginx_client_max_body_size=32m")

    assert result.returncode == 0, output(result)[-8000:]
    assert_no_failed_request(summary)
    assert set(summary["releases"]) <= {v1, v2} and v2 in summary["releases"]
    assert current(host) == v2
    assert_workers_overlapped(host, old_slot=slot_before, new_slot=live_slot(host))
    # Only the code changed for the app role: the host's setup is not written again.
    assert f"release {v1} was deployed with" in " ".join(output(result).split())
    for role in ("postgresql", "redis", "python"):
        assert f"{role}: skipped, its inputs are as this host recorded them" in output(result)
    assert "nginx: skipped" not in output(result)
    assert "client_max_body_size 32m;" in host.file("/etc/nginx/sites-available/shop.conf") \
        .content_string
    record = host.file(f"{PROVISION_STATE}/nginx.json")
    assert record.user == "root" and record.mode == 0o600
    assert json.loads(record.content_string)["fingerprint"] != nginx_record["fingerprint"]
    record = status(host, v2)
    assert record["status"] == "succeeded" and record["previous"] == v1
    assert "production.0002_shift" in record["migrations"]
    assert "production_shift" in tables(host)
    assert line_name(host) == "line one"
    assert lock_is_free(host)


def test_the_backup_taken_before_the_migrations_is_verified_and_private(host):
    v1, v2 = release_id("v1"), release_id("v2")
    directory = host.file(f"/var/backups/{APP}")
    assert directory.user == "root" and directory.mode == 0o700
    metadata = backups(host)
    mine = [meta for meta in metadata
            if meta.get("metadata", {}).get("to_release") == v2]
    assert len(mine) == 1, metadata
    assert mine[0]["metadata"]["from_release"] == v1
    assert mine[0]["verified"] is True
    assert status(host, v2)["backup"] == mine[0]["id"]
    loose = host.check_output(f"find /var/backups/{APP} -mindepth 1 \\( -type f -not -perm 0600 "
                              "\\) -o \\( -type d -not -perm 0700 \\) -o -not -user root")
    assert loose == "", f"backup files must be root-owned 0600 (dirs 0700): {loose}"


def test_rollback_returns_to_v1_under_load_and_reverses_the_migrations(host):
    v1, v2 = release_id("v1"), release_id("v2")

    slot_before = live_slot(host)
    result, summary = SCENARIO.under_load("rollback.yml", "/health/")

    assert result.returncode == 0, output(result)[-8000:]
    assert_no_failed_request(summary)
    assert "production.0002_shift" in output(result), "the plan lists the migrations it reverses"
    assert current(host) == v1
    assert_workers_overlapped(host, old_slot=slot_before, new_slot=live_slot(host))
    assert status(host, v2)["status"] == "rolled_back"
    assert status(host, v1)["status"] == "succeeded"
    assert "production_shift" not in tables(host)
    assert applied(host) == ["0001_initial"]
    assert manage(host, "from production.models import ProductionLine; "
                        "print(ProductionLine.objects.count())") == "1"


def test_a_release_failing_its_health_gate_never_receives_a_request(host):
    v1, v3 = release_id("v1"), release_id("v3")
    live = live_slot(host)
    served_by = host.check_output(f"readlink {ROOT}/slots/{live}")

    # /health/ names the release that answers; v3's answers 500 by design, and the load counts
    # every answer that is not a 200 as failed. Every step runs (app_deploy_mode=full), among
    # them the admin user's, which the code-only update to v2 left alone.
    result, summary = SCENARIO.under_load("deploy.yml", "/health/", "-e",
                                          f"app_source={SCENARIO.versions / 'v3'}",
                                          "-e", "app_deploy_mode=full")

    assert result.returncode != 0
    assert f"Release {v3} failed on" in output(result)
    assert "slot's socket, before the switch" in output(result), "refused by the direct check"
    assert f"It never received a request: release {v1} served throughout" in output(result)
    assert "admin user are left as that deploy wrote them" not in " ".join(output(result).split())
    assert_no_failed_request(summary)
    assert set(summary["releases"]) == {v1}, summary["releases"]
    assert current(host) == v1
    assert live_slot(host) == live
    assert host.check_output(f"readlink {ROOT}/slots/{live}") == served_by
    other = "green" if live == "blue" else "blue"
    assert not host.service(f"{APP}@{other}.service").is_running
    assert status(host, v3)["status"] == "failed"
    assert health_status(host) == "200"
    assert lock_is_free(host)
    # A failed release is never a rollback target.
    refused = SCENARIO.playbook("rollback.yml", "-e", f"release={v3}")
    assert refused.returncode != 0
    assert "is never a rollback target" in output(refused)


def test_no_secret_was_on_any_command_line_during_the_deploys_and_rollbacks(host, command_lines):
    assert_no_secret_seen(host, SCENARIO, command_lines, {
        "the deployment checks": "manage.py check --deploy",
        "collectstatic": "manage.py collectstatic --noinput",
        "the admin user's creation": "create_superuser",
        "the migrations helper": "slipway.django.migrations",
        "the backup": "pg_dump"})
