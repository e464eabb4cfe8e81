"""Runs through the console: real ansible-playbook processes, the real history store."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from console_helpers import (
    ROOT,
    VENV_BIN,
    alive,
    read_events,
    run_processes,
    wait_for_pid_in_store,
)


def trigger(site, user: str = "alice", **body):
    with site.api(user) as client:
        return client.post("/api/v1/deploy/trigger", json=body)


@pytest.fixture(scope="module")
def deployed(site) -> dict:
    """A deploy of staging by alice, finished."""
    response = trigger(site, environment="staging", branch="feature/login-form",
                       description="ship the login form")
    assert response.status_code == 201, response.text
    site.wait_for(response.json()["id"])
    return response.json()


def test_deploy_runs_the_playbook_and_lands_in_the_history(site, deployed):
    run_id, run_uuid = deployed["id"], deployed["run_uuid"]

    status = site.wait_for(run_id)
    assert status["status"] == "success"
    assert status["deployed_by"] == "alice"
    assert status["environment"] == "staging"
    assert status["branch"] == "feature/login-form"
    assert status["release_id"].startswith("r-")
    [host] = status["hosts"]
    assert host["host"] == "localhost" and host["changed"] == 3 and host["failed"] == 0
    asked = json.loads((site.output / f"deploy-{run_uuid}.json").read_text())
    assert asked == {"app_version": "feature/login-form", "description": "ship the login form"}
    assert (site.output / f"build-{run_uuid}").exists()
    assert (site.output / f"migrate-{run_uuid}").exists()
    with site.store() as store:
        row = store.get_run(run_id)
    assert row["run_uuid"] == run_uuid and row["status"] == "success"
    assert "console test line 3" in row["logs"]
    assert "PLAY RECAP" in row["logs"]


def test_skip_build_and_skip_migrations_skip_those_tags(site):
    response = trigger(site, environment="staging", skip_build=True, skip_migrations=True)
    assert response.status_code == 201, response.text
    run_uuid = response.json()["run_uuid"]
    status = site.wait_for(response.json()["id"])
    assert status["status"] == "success"
    assert status["skip_tags"] == "build,migrate"
    assert status["branch"] == "main"  # the environment's default_branch
    assert (site.output / f"deploy-{run_uuid}.json").exists()
    assert not (site.output / f"build-{run_uuid}").exists()
    assert not (site.output / f"migrate-{run_uuid}").exists()


def test_live_stream_delivers_the_whole_log_then_the_end(site):
    run_id = trigger(site, environment="staging").json()["id"]
    with site.api("victor") as client:
        events = read_events(client, f"/api/v1/deploy/logs/{run_id}/stream")
        final_log = client.get(f"/api/v1/deploy/history/{run_id}").json()["logs"]
    streamed = "".join(data["text"] for name, data in events if name == "log")
    assert streamed == final_log
    assert [data["status"] for name, data in events if name == "status"][0] == "running"
    assert events[-1][0] == "end" and events[-1][1]["status"] == "success"
    lines = [line for line in streamed.splitlines() if "console test line" in line]
    assert lines == [f"ok: [localhost] => console test line {n}" for n in (1, 2, 3)]


def test_logs_endpoint_reads_on_from_an_offset(site, deployed):
    run_id = deployed["id"]
    with site.api("victor") as client:
        whole = client.get(f"/api/v1/deploy/logs/{run_id}").json()
        part = client.get(f"/api/v1/deploy/logs/{run_id}", params={"offset": 100}).json()
        end = client.get(f"/api/v1/deploy/logs/{run_id}",
                         params={"offset": whole["next_offset"]}).json()
    assert whole["complete"] and whole["next_offset"] == len(whole["logs"])
    assert part["logs"] == whole["logs"][100:]
    assert end["logs"] == "" and end["next_offset"] == whole["next_offset"]


def test_a_busy_environment_refuses_a_second_run_and_cancel_stops_every_process(site):
    response = trigger(site, environment="slow", description="to be cancelled")
    run_id, run_uuid = response.json()["id"], response.json()["run_uuid"]
    sleep_pid = int(site.wait_for_file(f"sleep-{run_uuid}.pid").read_text())
    leader = wait_for_pid_in_store(site, run_id)
    assert os.getpgid(leader) == leader  # ansible-playbook leads its own group
    assert os.getsid(sleep_pid) != os.getsid(leader)  # Ansible's worker made a session of its own
    assert {leader, sleep_pid} <= set(run_processes(run_uuid))
    # One run per environment: a second one is refused with the running one's id.
    runs_before = len(site.runs())
    second = trigger(site, environment="slow", branch="other")
    assert second.status_code == 409 and second.json()["running_id"] == run_id
    assert f"run {run_id}" in second.json()["detail"]
    assert len(site.runs()) == runs_before

    with site.api("alice") as client:
        cancelled = client.post(f"/api/v1/deploy/cancel/{run_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["gone"] is True and cancelled.json()["killed"] is False
    assert run_processes(run_uuid) == []
    assert not alive(sleep_pid) and not alive(leader)

    status = site.wait_for(run_id)
    assert status["status"] == "cancelled"
    assert status["error_message"] == "cancelled by alice"
    unlock_id = cancelled.json()["unlock_run_id"]
    assert site.wait_for(unlock_id)["status"] == "success"
    assert site.wait_for_file(f"unlock-{run_uuid}").read_text().strip() == run_uuid
    with site.api("root") as client:
        log = client.get(f"/api/v1/deploy/logs/{run_id}").json()["logs"]
        audit = client.get("/api/v1/audit", params={"action": "cancel"}).json()["audit"]
    assert "CANCELLED by alice" in log
    assert audit[0]["actor"] == "alice" and audit[0]["run_id"] == run_id
    assert audit[0]["outcome"] == "cancelled" and audit[0]["at"]


def test_cancel_kills_what_ignores_sigterm_after_the_grace_period(site):
    response = trigger(site, environment="stubborn")
    run_id, run_uuid = response.json()["id"], response.json()["run_uuid"]
    sleep_pid = int(site.wait_for_file(f"sleep-{run_uuid}.pid").read_text())
    wait_for_pid_in_store(site, run_id)

    with site.api("alice") as client:
        cancelled = client.post(f"/api/v1/deploy/cancel/{run_id}").json()
    assert cancelled["gone"] is True and cancelled["killed"] is True
    assert run_processes(run_uuid) == [] and not alive(sleep_pid)
    assert site.wait_for(run_id)["status"] == "cancelled"
    site.wait_for(cancelled["unlock_run_id"])


def test_a_run_from_a_terminal_shares_the_history_and_the_one_run_rule(site):
    """ansible-playbook started by hand, with the repository's ansible.cfg, lands in the same
    store; the console refuses to start beside it and can stop it."""
    run_uuid = str(uuid.uuid4())
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "SLIPWAY_HISTORY_DB": site.store_url,
           "SLIPWAY_HISTORY_RUN_UUID": run_uuid, "SLIPWAY_HISTORY_FLUSH_INTERVAL": "0.2"}
    terminal = subprocess.Popen(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(site.root / "inventories" / "slow"),
         str(ROOT / "tests" / "console" / "playbooks" / "deploy.yml")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        site.wait_for_file(f"sleep-{run_uuid}.pid")
        with site.store() as store:
            row = store.find_run(run_uuid)
        assert row["environment"] == "slow" and row["status"] == "running"

        refused = trigger(site, environment="slow")
        assert refused.status_code == 409 and refused.json()["running_id"] == row["id"]

        with site.api("root") as client:
            cancelled = client.post(f"/api/v1/deploy/cancel/{row['id']}")
        assert cancelled.status_code == 200, cancelled.text
        assert terminal.wait(10) != 0
        assert run_processes(run_uuid) == []
        assert site.wait_for(row["id"])["status"] == "cancelled"
        site.wait_for(cancelled.json()["unlock_run_id"])
    finally:
        if terminal.poll() is None:
            terminal.kill()


def test_a_run_that_fails_before_ansible_is_up_keeps_its_output(site):
    response = trigger(site, environment="broken")
    assert response.status_code == 201
    status = site.wait_for(response.json()["id"])
    assert status["status"] == "failed"
    with site.api("alice") as client:
        log = client.get(f"/api/v1/deploy/logs/{response.json()['id']}").json()["logs"]
    assert "ERROR" in log and "broken.yml" in log


@pytest.mark.parametrize("body", [
    {"release": "r-0123456789"},
    {},
])
def test_rollback_runs_the_rollback_playbook(site, body):
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/rollback",
                               json={"environment": "staging", "restore_db": True, **body})
    assert response.status_code == 201, response.text
    run_uuid = response.json()["run_uuid"]
    assert site.wait_for(response.json()["id"])["status"] == "success"
    asked = json.loads((site.output / f"rollback-{run_uuid}.json").read_text())
    assert asked == {"release": body.get("release", ""), "restore_db": True}


def test_rollback_to_a_runs_release(site):
    deployed = trigger(site, environment="staging", branch="v1.2").json()
    release = site.wait_for(deployed["id"])["release_id"]
    with site.api("alice") as client:
        response = client.post("/api/v1/deploy/rollback",
                               json={"environment": "staging", "deploy_id": deployed["id"]})
        other_env = client.post("/api/v1/deploy/rollback",
                                json={"environment": "slow", "deploy_id": deployed["id"]})
    assert response.status_code == 201, response.text
    assert site.wait_for(response.json()["id"])["status"] == "success"
    asked = json.loads((site.output / f"rollback-{response.json()['run_uuid']}.json").read_text())
    assert asked == {"release": release, "restore_db": False}
    assert other_env.status_code == 422
    assert "deployed environment staging, not slow" in other_env.json()["detail"]
