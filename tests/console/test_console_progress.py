"""The progress bar of a run: phases from the task records of the deploy_history callback."""

from __future__ import annotations

import time
from pathlib import Path

from console_helpers import login

from slipway.phases import (
    PHASE_NAMES,
    TASK_FILE_PHASES,
    UNPHASED_TASK_FILES,
    phase_of,
    progress,
)

ROOT = Path(__file__).resolve().parents[2]
ORDER = {"pending": 0, "running": 1, "done": 2}


def test_every_phase_has_a_task_file_of_the_app_role():
    assert set(TASK_FILE_PHASES.values()) == set(PHASE_NAMES)
    assert phase_of("slipway.django.app", "migrate.yml") == "migrate"
    assert phase_of("app", "gate.yml") == "health"
    assert phase_of("slipway.django.release", "gate.yml") == "health"
    assert phase_of("other", "migrate.yml") is None
    assert phase_of(None, "migrate.yml") is None
    assert phase_of("app", "hook.yml") is None


def test_every_tasks_file_of_the_app_role_has_a_phase_or_says_it_has_none():
    """A new tasks file must be placed: the bar would not move while it runs."""
    files = {path.name for role in ("app", "release")
             for path in (ROOT / "roles" / role / "tasks").glob("*.yml")}
    assert files - set(TASK_FILE_PHASES) == UNPHASED_TASK_FILES
    assert set(TASK_FILE_PHASES) <= files


def test_a_failed_task_fails_its_phase_and_the_later_ones_stay_pending():
    tasks = [{"host": "web1", "role": "app", "task_file": "lock.yml", "status": "ok"},
             {"host": "web1", "role": "app", "task_file": "migrate.yml", "status": "failed"},
             {"host": "web1", "role": "app", "task_file": "unlock.yml", "status": "ok"},
             {"host": "web2", "role": "app", "task_file": "lock.yml", "status": "ok"}]
    result = progress(tasks, "failed")
    states = {phase["name"]: phase["hosts"] for phase in result["phases"]}
    assert result["hosts"] == ["web1", "web2"]
    assert states["migrate"] == {"web1": "failed", "web2": "pending"}
    assert states["lock"] == {"web1": "done", "web2": "failed"}
    assert states["cleanup"]["web1"] == "done"


def test_a_run_advances_phase_by_phase_and_ends_all_done(site):
    with site.api("alice") as client:
        started = client.post("/api/v1/deploy/trigger", json={"environment": "phased"})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        observed: list[dict[str, str]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answer = client.get(f"/api/v1/runs/{run_id}/progress")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            states = {phase["name"]: phase["state"] for phase in body["phases"]}
            if not observed or observed[-1] != states:
                observed.append(states)
            if body["status"] != "running" and not body["active"]:
                break
            time.sleep(0.2)
    assert body["status"] == "success"
    assert [phase["name"] for phase in body["phases"]] == list(PHASE_NAMES)
    assert body["hosts"] == ["localhost"]
    assert all(phase["hosts"] == {"localhost": "done"} for phase in body["phases"])
    # Never backwards: each phase goes pending -> running -> done.
    for name in PHASE_NAMES:
        values = [ORDER[states[name]] for states in observed]
        assert values == sorted(values), (name, observed)
    # The bar moved through the phases one after another (each pauses a second).
    running = [next(name for name, state in states.items() if state == "running")
               for states in observed if "running" in states.values()]
    assert len(set(running)) >= 5, observed
    assert running == sorted(running, key=PHASE_NAMES.index)
    assert observed[-1] == dict.fromkeys(PHASE_NAMES, "done")

    # The run's page shows the bar, as its records say.
    browser, _response = login(site, "victor")
    page = browser.get(f"/runs/{run_id}")
    browser.close()
    assert page.status_code == 200
    for name in PHASE_NAMES:
        assert f'data-phase="{name}" data-state="done"' in page.text


def test_progress_of_unknown_run_is_404_and_needs_a_login(site):
    with site.api("victor") as client:
        assert client.get("/api/v1/runs/999999/progress").status_code == 404
    with site.api() as anonymous:
        assert anonymous.get("/api/v1/runs/1/progress").status_code == 401
