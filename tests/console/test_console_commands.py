"""One-off commands from the console (issue 13): only the allow-list of an environment, with the
permissions, approvals and audit of a deploy, passed to playbooks/manage.yml as data."""

from __future__ import annotations

import json

import pytest
from console_helpers import csrf_of, login


def _audit(site, action: str = "command") -> list[dict]:
    with site.api("root") as client:
        return client.get("/api/v1/audit", params={"action": action}).json()["audit"]


def _recorded(site, run_id: int) -> dict:
    uuid = site.store().get_run(run_id)["run_uuid"]
    return json.loads((site.output / f"command-{uuid}.json").read_text())


def test_an_allowed_command_starts_a_run_of_kind_command_with_its_fixed_command_line(site):
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/command", json={
            "environment": "staging", "command": "backfill_po", "dry_run": True})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    status = site.wait_for(run_id)

    assert status["status"] == "success", status
    assert (status["kind"], status["command"], status["command_rc"]) == (
        "command", "backfill_po --days 7 --limit 10", 0)
    assert _recorded(site, run_id) == {"command": "backfill_po --days 7 --limit 10",
                                       "dry_run": True}
    with site.api("alice") as client:
        record = client.get(f"/api/v1/deploy/history/{run_id}").json()
        listed = client.get("/api/v1/deploy/history",
                            params={"environment": "staging"}).json()["runs"]
    assert record["command_output"] == "ran backfill_po --days 7 --limit 10"
    assert "manage.py backfill_po --days 7 --limit 10 (dry run)" in record["logs"]
    assert [run["kind"] for run in listed if run["id"] == run_id] == ["command"]
    started = [row for row in _audit(site) if row["run_id"] == run_id]
    assert [(row["actor"], row["outcome"]) for row in started] == [("alice", "started")]


@pytest.mark.parametrize(("body", "reason"), [
    ({"command": "migrate"}, "'migrate' is not on the allow-list of environment staging"),
    ({"command": "backfill_po --days 365"}, "is not on the allow-list"),
    ({"command": "clearsessions", "dry_run": True}, "is not allowed as a dry run"),
])
def test_a_command_not_on_the_allow_list_is_refused_and_audited(site, body, reason):
    before = {run["id"] for run in site.runs()}
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/command",
                               json={"environment": "staging", **body})

    assert response.status_code == 403, response.text
    assert reason in response.json()["detail"]
    assert {run["id"] for run in site.runs()} == before
    refused = _audit(site)[0]
    assert (refused["actor"], refused["outcome"]) == ("alice", "refused")
    assert reason in refused["detail"]["reason"]


def test_a_viewer_cannot_run_a_command(site):
    with site.api("victor") as client:
        response = client.post("/api/v1/deploy/command", json={
            "environment": "staging", "command": "backfill_po"})
    assert response.status_code == 403
    assert "viewers cannot command" in response.json()["detail"]


def test_a_template_in_a_configured_command_reaches_the_playbook_as_text(site):
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/command", json={
            "environment": "staging", "command": "note"})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    assert site.wait_for(run_id)["status"] == "success"

    command = _recorded(site, run_id)["command"]
    assert command.startswith("backfill_po --note \"{{ lookup('pipe', 'touch${IFS}")
    assert not site.marker.exists()


def test_a_command_of_an_environment_that_needs_approval_waits_for_a_second_admin(site):
    with site.api("root") as client:
        held = client.post("/api/v1/deploy/command", json={
            "environment": "production", "command": "backfill_po", "dry_run": True})
    assert held.status_code == 202, held.text
    with site.api("second") as client:
        approved = client.post(f"/api/v1/approvals/{held.json()['approval_id']}/approve")
    assert approved.status_code == 201, approved.text
    status = site.wait_for(approved.json()["id"])
    assert (status["status"], status["kind"], status["deployed_by"]) == (
        "success", "command", "root")


def test_the_deploy_page_offers_only_the_allowed_commands_and_its_dry_run_button_runs_one(site):
    client = login(site, "alice")[0]
    page = client.get("/deploy").text
    assert 'value="backfill_po"' in page and 'value="clearsessions"' in page
    assert page.count('name="dry_run" value="true"') == 1  # only backfill_po allows a dry run
    assert page.count('name="dry_run" value="false"') == 3

    pressed = client.post("/commands", data={
        "csrf_token": csrf_of(client), "environment": "staging", "command": "backfill_po",
        "dry_run": "true"})
    assert pressed.status_code == 303, pressed.text
    run_id = int(pressed.headers["location"].rsplit("/", 1)[1])
    site.wait_for(run_id)
    run_page = client.get(f"/runs/{run_id}").text
    assert '<dd id="run-kind">command</dd>' in run_page
    assert "ran backfill_po --days 7 --limit 10" in run_page
    assert _recorded(site, run_id)["dry_run"] is True
    client.close()
