"""Past an irreversible migration: v1, then a v4 whose data migration cannot be reversed, whose
rollback is refused unless the backup is restored; then a v5 that fails its health gate after
migrating, deployed with the opt-in database restore. The update scenario covers v1 -> v2 ->
rollback -> a failing v3; this one runs beside it, on Debian 12.

The tests run in this order and each starts from the state the previous one left. A sampler
inside the container records every process command line meanwhile, restores included; the last
test looks for the app's secrets in them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(PROJECT / "tests" / "testbed"))

from deploy_steps import (  # noqa: E402
    Scenario,
    add_line_one,
    applied,
    assert_no_failed_request,
    assert_no_secret_seen,
    backups,
    command_lines_fixture,
    current,
    health_status,
    line_name,
    lock_is_free,
    output,
    status,
)

SCENARIO = Scenario("slipway-molecule-restore")
release_id = SCENARIO.release_id

command_lines = command_lines_fixture(SCENARIO)


def test_v1_runs_with_a_line_to_rename(host):
    assert current(host) == release_id("v1")
    assert status(host, release_id("v1"))["status"] == "succeeded"
    add_line_one(host)
    assert line_name(host) == "line one"


def fetch(path: str) -> tuple[int, dict, str]:
    """GET through the published port, from the controller (not an allowed address)."""
    try:
        with urllib.request.urlopen(SCENARIO.url(path), timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def changed(result) -> int:
    return int(re.search(r"slipway-molecule-restore\s*:.*changed=(\d+)", output(result))[1])


def test_maintenance_mode_answers_every_request_with_the_page_but_allowed_addresses(host):
    page = SCENARIO.ephemeral / "maintenance.html"
    page.write_text("<!DOCTYPE html><title>Upgrade</title><h1>Back at five o'clock</h1>\n")
    # The host's own address is allowed: its requests to it still reach the app; the
    # controller's, through the published port, do not.
    address = host.check_output("hostname -I").split()[0]
    given = ["-e", json.dumps({"nginx_maintenance_page": str(page),
                               "nginx_maintenance_allow": [address]})]

    def from_the_host() -> str:
        # (With the Host the app accepts: the request reaches Django.)
        return host.check_output(
            "python3 -c 'import urllib.request; print(urllib.request.urlopen("
            f"urllib.request.Request(\"http://{address}/health/\", "
            "headers={\"Host\": \"127.0.0.1\"})).status)'").strip()

    refused = SCENARIO.playbook("maintenance.yml", "-e", "state=maybe", *given)
    assert refused.returncode != 0
    assert 'Say which state to put the site in: -e state=on or -e state=off (found "maybe")' \
        in " ".join(output(refused).split())
    assert fetch("/health/")[0] == 200

    try:
        on = SCENARIO.playbook("maintenance.yml", "-e", "state=on", *given)
        assert on.returncode == 0, output(on)[-8000:]
        for path in ("/health/", "/admin/login/", "/static/admin/css/base.css"):
            status, headers, body = fetch(path)
            assert status == 503, path
            assert headers["Retry-After"] == "300"
            assert "Back at five o'clock" in body
        assert from_the_host() == "200"
        # So does the host's loopback (the deploy's health gate checks the site through nginx).
        assert health_status(host) == "200"

        again = SCENARIO.playbook("maintenance.yml", "-e", "state=on", *given)
        assert again.returncode == 0, output(again)[-8000:]
        assert changed(again) == 0
        assert fetch("/health/")[0] == 503
    finally:
        off = SCENARIO.playbook("maintenance.yml", "-e", "state=off", *given)
    assert off.returncode == 0, output(off)[-8000:]
    status, headers, body = fetch("/health/")
    assert status == 200 and "Retry-After" not in headers
    assert json.loads(body)["release"] == release_id("v1")


def test_a_rollback_past_an_irreversible_migration_is_refused_with_its_name(host):
    v1, v4 = release_id("v1"), release_id("v4")
    deployed = SCENARIO.deploy("v4")
    assert deployed.returncode == 0, output(deployed)[-8000:]
    assert current(host) == v4
    assert "0004_uppercase_line_names" in applied(host)
    assert line_name(host) == "LINE ONE"

    refused = SCENARIO.playbook("rollback.yml")

    assert refused.returncode != 0
    assert "Nothing was changed: these migrations would have to be reversed and cannot be: " \
        "production.0004_uppercase_line_names" in output(refused)
    assert "-e restore_db=true" in output(refused)
    assert current(host) == v4
    assert status(host, v4)["status"] == "succeeded"
    assert "0004_uppercase_line_names" in applied(host)
    assert line_name(host) == "LINE ONE"
    assert lock_is_free(host)
    assert status(host, v4)["previous"] == v1


def test_a_rollback_restoring_the_backup_brings_back_the_data_v4_changed(host):
    v1, v4 = release_id("v1"), release_id("v4")
    taken = status(host, v4)["backup"]
    before = {backup["id"] for backup in backups(host)}

    # The switch back is behind the health gate like any rollback; while the tables are
    # replaced, nginx answers with the maintenance page (503, Retry-After) and no request reaches
    # the app.
    result, summary = SCENARIO.under_load("rollback.yml", "/health/", "-e", "restore_db=true")

    assert result.returncode == 0, output(result)[-8000:]
    assert summary["maintenance"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert summary["other_status"] == 0, summary["statuses"]
    assert fetch("/health/")[0] == 200
    assert f"Restore the database from backup {taken}" in output(result)
    assert current(host) == v1
    assert status(host, v4)["status"] == "rolled_back"
    assert line_name(host) == "line one"
    assert "0004_uppercase_line_names" not in applied(host)
    safety = [backup for backup in backups(host) if backup["id"] not in before]
    assert len(safety) == 1 and safety[0]["verified"] is True
    assert (safety[0]["kind"], safety[0]["restoring"]) == ("safety", taken)
    assert safety[0]["metadata"]["reason"] == f"safety backup before restoring {taken}"
    assert lock_is_free(host)
    assert health_status(host) == "200"


def test_a_failed_gate_restores_the_database_only_when_asked_to(host):
    v1, v5 = release_id("v1"), release_id("v5")
    assert "0004_uppercase_line_names" not in applied(host)

    result, summary = SCENARIO.under_load("deploy.yml", "/admin/login/", "-e",
                                          f"app_source={SCENARIO.versions / 'v5'}", "-e",
                                          "app_rollback_restore_db=true")

    assert result.returncode != 0
    assert f"It never received a request: release {v1} served throughout" in output(result)
    assert_no_failed_request(summary)
    assert current(host) == v1
    assert status(host, v5)["status"] == "failed"
    taken = status(host, v5)["backup"]
    assert f"The database was restored from backup {taken}." in " ".join(output(result).split())
    # v5's migration ran (it uppercased the names) and the restore undid it.
    assert "0004_uppercase_line_names" not in applied(host)
    assert line_name(host) == "line one"
    assert lock_is_free(host)


def test_no_secret_was_on_any_command_line_during_the_deploys_and_restores(host, command_lines):
    assert_no_secret_seen(host, SCENARIO, command_lines, {
        "the migrations helper": "slipway.django.migrations",
        "the backup": "pg_dump",
        "the restore": "pg_restore"})
