"""Issue 16: scheduled deploys. The cron fields on their own, then a real console whose clock
is moved (``SLIPWAY_CONSOLE_TIME_OFFSET``) to just before the schedules' 04:30 UTC."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from console_helpers import ROOT, Site, login

sys.path.insert(0, str(ROOT / "src"))

from slipway.console import cron  # noqa: E402
from slipway.console.config import ConfigError, load_config  # noqa: E402

# The console's clock starts this long before the schedules are due.
LEAD = timedelta(seconds=20)
SCHEDULES = (
    "schedule_tick: 0.2",
    "schedules:",
    "  - {environment: staging, branch: main, cron: '30 4 * * *', description: nightly staging}",
    # Two of slow at once: the first starts a long run, the second finds it going.
    "  - {environment: slow, branch: main, cron: '30 4 * * *'}",
    "  - {environment: slow, branch: release/2, cron: '30 4 * * *'}",
    "  - {environment: production, cron: '30 4 * * *', description: nightly production}",
    "  - {environment: paced, cron: '0 3 1 1 *', description: new year}",
)


# The five fields

@pytest.mark.parametrize(("expression", "after", "expected"), [
    ("30 4 * * *", datetime(2026, 3, 1, 4, 29, 59), datetime(2026, 3, 1, 4, 30)),
    ("30 4 * * *", datetime(2026, 3, 1, 4, 30), datetime(2026, 3, 2, 4, 30)),
    ("*/15 * * * *", datetime(2026, 3, 1, 10, 14, 30), datetime(2026, 3, 1, 10, 15)),
    ("0 9-17/4 * * *", datetime(2026, 3, 1, 13, 0), datetime(2026, 3, 1, 17, 0)),
    ("0 0 * * 1-5", datetime(2026, 11, 27, 12, 0), datetime(2026, 11, 30, 0, 0)),  # Fri -> Mon
    ("0 0 * * 0", datetime(2026, 11, 27, 12, 0), datetime(2026, 11, 29, 0, 0)),
    ("0 0 * * 7", datetime(2026, 11, 27, 12, 0), datetime(2026, 11, 29, 0, 0)),
    ("5,35 * * 2 *", datetime(2026, 11, 27, 12, 0), datetime(2027, 2, 1, 0, 5)),
    ("0 12 29 2 *", datetime(2026, 3, 1), datetime(2028, 2, 29, 12, 0)),
    # Both day fields restricted: either matches, as in cron (the 1st, or a Monday).
    ("0 0 1 * 1", datetime(2026, 11, 27), datetime(2026, 11, 30)),
    ("59 23 31 12 *", datetime(2026, 12, 31, 23, 59), datetime(2027, 12, 31, 23, 59)),
])
def test_next_after(expression, after, expected):
    assert cron.parse(expression).next_after(after) == expected


@pytest.mark.parametrize(("expression", "problem"), [
    ("* * * *", "4 fields"),
    ("60 * * * *", "minute: '60'"),
    ("* 24 * * *", "hour"),
    ("* * 0 * *", "day of month"),
    ("* * * 13 *", "month"),
    ("* * * * 8", "day of week"),
    ("5-1 * * * *", "goes backwards"),
    ("*/0 * * * *", "minute"),
    ("@daily", "1 fields"),
    ("0 0 31 2 *", "matches no date"),
    ("{{ lookup('pipe', 'id') }} * * * *", "minute"),
])
def test_a_bad_expression_names_its_problem(expression, problem):
    with pytest.raises(cron.CronError, match=problem):
        cron.parse(expression)


def test_a_schedule_of_an_unknown_environment_or_a_bad_branch_stops_the_console(tmp_path):
    site = Site(tmp_path, top=("schedules:", "  - {environment: nowhere, cron: '* * * * *'}"))
    with pytest.raises(ConfigError, match="unknown environment 'nowhere'"):
        load_config(site.config)
    site.config.write_text(site.config.read_text().replace(
        "environment: nowhere", "environment: staging, branch: 'main$(id)'"))
    with pytest.raises(ConfigError, match="malformed branch name"):
        load_config(site.config)


# A console

def console_clock_start() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, hour=4, minute=30, second=0,
                                     microsecond=0) - LEAD


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("schedules"), grace=3.0, top=SCHEDULES)
    site.add_user("root", "admin")
    site.clock_start = console_clock_start()  # the day of the test's start, even at midnight
    offset = (site.clock_start - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    site.environ["SLIPWAY_CONSOLE_TIME_OFFSET"] = f"{offset:.3f}"
    site.start()
    site.add_user_by_api("second", "admin")
    yield site
    site.stop()


def listing(site: Site) -> list[dict]:
    with site.api("root") as client:
        response = client.get("/api/v1/schedules")
    assert response.status_code == 200, response.text
    return response.json()["schedules"]


def wait_for_outcomes(site: Site, timeout: float = 120) -> list[dict]:
    """The schedules once every one due at 04:30 has an outcome."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        schedules = listing(site)
        if all(entry["last"] for entry in schedules if entry["cron"] == "30 4 * * *"):
            return schedules
        time.sleep(0.2)
    raise AssertionError(f"the 04:30 schedules did not all run: {schedules}")


def moment(text: str) -> datetime:
    """A time of the API's JSON (UTC, with its offset) as naive UTC."""
    return datetime.fromisoformat(text).astimezone(UTC).replace(tzinfo=None)


def entry_of(schedules: list[dict], environment: str, branch: str = "main") -> dict:
    return next(entry for entry in schedules
                if entry["environment"] == environment and entry["branch"] == branch)


def test_a_schedule_runs_when_the_clock_reaches_it(site):
    schedules = wait_for_outcomes(site)
    staging = entry_of(schedules, "staging")
    due = site.clock_start + LEAD
    assert staging["last"]["outcome"] == "started"
    assert moment(staging["last"]["last_at"]) >= due
    # Next due a day later, by the console's clock.
    assert moment(staging["next_run"]) == due + timedelta(days=1)
    run = site.wait_for(staging["last"]["run_id"])
    assert run["status"] == "success", run
    recorded = site.store().get_run(run["id"])
    assert recorded["deployed_by"] == "schedule:staging"
    assert recorded["branch"] == "main"
    assert recorded["description"] == "nightly staging"


def test_a_schedule_finding_a_run_going_is_skipped_and_audited(site):
    schedules = wait_for_outcomes(site)
    first, second = entry_of(schedules, "slow"), entry_of(schedules, "slow", "release/2")
    assert first["last"]["outcome"] == "started"
    running_id = first["last"]["run_id"]
    assert second["last"]["outcome"] == "skipped"
    assert f"has a run going: run {running_id}" in second["last"]["reason"]
    assert [run["id"] for run in site.runs(environment="slow")] == [running_id]
    with site.api("root") as client:
        rows = client.get("/api/v1/audit", params={"action": "schedule"}).json()["audit"]
        cancelled = client.post(f"/api/v1/deploy/cancel/{running_id}")
    assert any(row["actor"] == "schedule:slow" and row["outcome"] == "skipped"
               and row["detail"]["branch"] == "release/2"
               and f"run {running_id}" in row["detail"]["reason"] for row in rows)
    assert cancelled.status_code == 200, cancelled.text
    site.wait_for(running_id)


def test_a_schedule_of_an_environment_that_needs_approval_waits_for_an_admin(site):
    production = entry_of(wait_for_outcomes(site), "production")
    assert production["last"]["outcome"] == "pending approval"
    approval_id = production["last"]["approval_id"]
    with site.api("root") as client:
        approval = next(entry for entry in client.get("/api/v1/approvals").json()["approvals"]
                        if entry["id"] == approval_id)
        assert approval["requested_by"] == "schedule:production"
        approved = client.post(f"/api/v1/approvals/{approval_id}/approve")
    assert approved.status_code == 201, approved.text
    run = site.wait_for(approved.json()["id"])
    assert run["status"] == "success"
    assert site.store().get_run(run["id"])["deployed_by"] == "schedule:production"


def test_the_page_lists_the_schedules_with_their_next_run_and_last_outcome(site):
    schedules = wait_for_outcomes(site)
    staging = entry_of(schedules, "staging")
    client, _token = login(site, "root")
    try:
        page = client.get("/schedules")
    finally:
        client.close()
    assert page.status_code == 200
    text = page.text
    assert "nightly staging" in text and "new year" in text
    assert "<code>0 3 1 1 *</code>" in text
    new_year = datetime(site.clock_start.year + 1, 1, 1, 3, 0)
    assert new_year.strftime("%Y-%m-%d %H:%M:%S") in text
    assert f'<a href="/runs/{staging["last"]["run_id"]}">run #{staging["last"]["run_id"]}</a>' \
        in text
    assert "not run yet" in text  # the new year's
    assert "skipped" in text


def test_the_schedules_api_needs_a_token(site):
    with site.api() as client:
        assert client.get("/api/v1/schedules").status_code == 401
