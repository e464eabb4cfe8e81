"""An environment's page: "Roll back to this" on its successful runs, and its deploy charts."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

from console_helpers import csrf_of, login

from slipway.console.charts import bucket_starts
from slipway.history.store import utcnow


def add_run(site, environment: str, started, minutes: float, status: str = "success",
            kind: str = "deploy", release: str | None = "r-0123456789") -> int:
    completed = started + timedelta(minutes=minutes)
    playbook = {"deploy": "deploy.yml", "rollback": "rollback.yml"}[kind]
    with site.store() as store:
        return store.apply(str(uuid.uuid4()), [
            ("start", {"environment": environment, "deployed_by": "terminal", "kind": kind,
                       "playbook": playbook, "started_at": started, "status": "running",
                       "release_id": release}),
            ("finish", {"status": status, "completed_at": completed,
                        "duration": int(minutes * 60)})])


def bars(page: str, chart: str) -> list[str]:
    svg = re.search(rf'<svg class="chart" id="chart-{chart}".*?</svg>', page, re.S).group(0)
    return re.findall(r'<rect class="bar[^"]*"[^>]*data-value="([^"]*)"', svg)


def rollback_forms(page: str) -> list[int]:
    return [int(run) for run in re.findall(
        r'<form method="post" action="/runs/(\d+)/rollback" class="rollback-to"', page)]


def test_roll_back_to_a_successful_run_from_the_environment_page(site):
    with site.api("alice") as client:
        started = client.post("/api/v1/deploy/trigger",
                              json={"environment": "staging", "branch": "v1.0"})
    good = started.json()["id"]
    release = site.wait_for(good)["release_id"]
    assert release
    failed = add_run(site, "staging", utcnow(), 1, status="failed", release="r-failed0000")

    alice, _response = login(site, "alice")
    page = alice.get("/environments/staging")
    assert page.status_code == 200
    assert rollback_forms(page.text) == [good]
    # A viewer sees the history, with no button; a deployer of other environments neither.
    victor, _response = login(site, "victor")
    assert rollback_forms(victor.get("/environments/staging").text) == []
    assert victor.get("/environments/staging").status_code == 200

    token = csrf_of(alice, "/environments/staging")
    answer = alice.post(f"/runs/{good}/rollback", data={"csrf_token": token})
    assert answer.status_code == 303
    rollback_id = int(answer.headers["location"].rsplit("/", 1)[1])
    run = site.wait_for(rollback_id)
    assert run["status"] == "success" and run["kind"] == "rollback"
    recorded = json.loads(site.wait_for_file(f"rollback-{run['run_uuid']}.json").read_text())
    assert recorded == {"release": release, "restore_db": False}

    # Only successful runs: the form of a failed one is refused, nothing starts.
    before = len(site.runs())
    refused = alice.post(f"/runs/{failed}/rollback", data={"csrf_token": token})
    assert refused.status_code == 422
    assert len(site.runs()) == before
    alice.close()
    victor.close()


def test_roll_back_needs_deploy_rights_and_goes_through_approvals(site):
    good = add_run(site, "production", utcnow() - timedelta(hours=2), 3,
                   release="r-prod000001")
    alice, _response = login(site, "alice")
    assert rollback_forms(alice.get("/environments/production").text) == []
    before = len(site.runs())
    token = csrf_of(alice, "/environments/staging")
    refused = alice.post(f"/runs/{good}/rollback", data={"csrf_token": token})
    assert refused.status_code == 403
    assert len(site.runs()) == before
    alice.close()

    root, _response = login(site, "root")
    assert good in rollback_forms(root.get("/environments/production").text)
    token = csrf_of(root, "/environments/production")
    held = root.post(f"/runs/{good}/rollback", data={"csrf_token": token})
    assert held.status_code == 303 and held.headers["location"] == "/approvals"
    assert len(site.runs()) == before
    root.close()
    with site.api("second") as client:
        pending = [approval for approval in client.get(
            "/api/v1/approvals", params={"state": "pending"}).json()["approvals"]
            if approval["environment"] == "production" and approval["kind"] == "rollback"]
        assert pending and pending[-1]["params"]["release"] == "r-prod000001"
        approved = client.post(f"/api/v1/approvals/{pending[-1]['id']}/approve")
    assert approved.status_code == 201, approved.text
    run = site.wait_for(approved.json()["id"])
    recorded = json.loads(site.wait_for_file(f"rollback-{run['run_uuid']}.json").read_text())
    assert recorded["release"] == "r-prod000001"


def test_deploy_charts_of_an_environment(site):
    now = utcnow()
    weeks = bucket_starts("week", now)
    this_week, two_back = weeks[-1], weeks[-3]
    add_run(site, "stubborn", two_back + timedelta(hours=1), 0.5)
    add_run(site, "stubborn", this_week + timedelta(hours=1), 1)
    add_run(site, "stubborn", this_week + timedelta(hours=2), 10, status="failed")
    add_run(site, "stubborn", this_week + timedelta(hours=3), 2)
    # A rollback is no deploy, but it restores: from the failure's end to the next success.
    add_run(site, "stubborn", weeks[-2] + timedelta(hours=1), 1, kind="rollback")

    victor, _response = login(site, "victor")
    page = victor.get("/environments/stubborn")
    assert page.status_code == 200
    frequency = bars(page.text, "frequency")
    assert len(frequency) == 12
    assert frequency[-1] == "3" and frequency[-3] == "1" and frequency[-2] == "0"
    assert set(frequency[:-3]) == {"0"}
    duration = bars(page.text, "duration")
    assert len(duration) == 12 and duration[-1] == "90" and duration[-3] == "30"
    assert duration[-2] == ""
    failure_rate = bars(page.text, "failure-rate")
    assert failure_rate[-1] == "33.3" and failure_rate[-3] == "0"
    # Failed run ends at +2h10m, the next success at +3h02m: 52 minutes.
    assert bars(page.text, "time-to-restore")[-1] == "52"

    daily = victor.get("/environments/stubborn", params={"period": "day"})
    assert len(bars(daily.text, "frequency")) == 30
    assert victor.get("/environments/stubborn", params={"period": "year"}).status_code == 422
    assert victor.get("/environments/nowhere").status_code == 422
    victor.close()
