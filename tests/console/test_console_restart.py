"""What a console finds when it starts: runs a dead console left behind, and no accounts."""

from __future__ import annotations

import time

import httpx
from console_helpers import Site, alive, run_processes, wait_for_pid_in_store


def test_runs_left_by_a_dead_console_are_stopped_and_marked_interrupted(fresh_site):
    site = fresh_site
    with site.api("alice") as client:
        started = client.post("/api/v1/deploy/trigger", json={"environment": "slow"}).json()
    sleep_pid = int(site.wait_for_file(f"sleep-{started['run_uuid']}.pid").read_text())
    wait_for_pid_in_store(site, started["id"])
    work = site.root / "runner" / started["run_uuid"]
    assert work.is_dir()

    site.kill()  # the console dies; its ansible-playbook is left without anyone to follow it
    with site.store() as store:
        assert store.get_run(started["id"])["status"] == "running"

    site.start()
    assert not work.exists(), "the run's work files (its environment) are removed"
    status = site.wait_for(started["id"], timeout=60)
    assert status["status"] == "interrupted"
    assert "its console stopped" in status["error_message"]
    assert run_processes(started["run_uuid"]) == [] and not alive(sleep_pid)
    # The deploy lock of the interrupted run is released.
    assert site.wait_for_file(f"unlock-{started['run_uuid']}").read_text().strip() \
        == started["run_uuid"]
    with site.api("root") as client:
        audit = client.get("/api/v1/audit", params={"action": "interrupted"}).json()["audit"]
        again = client.post("/api/v1/deploy/trigger", json={"environment": "slow"})
    assert audit[0]["run_id"] == started["id"]
    # The environment is free again (once the lock release has run).
    assert again.status_code in (201, 409)
    if again.status_code == 409:
        site.wait_for(again.json()["running_id"])
    else:
        with site.api("root") as client:
            client.post(f"/api/v1/deploy/cancel/{again.json()['id']}")


def test_one_run_per_environment_holds_across_a_restart(fresh_site):
    site = fresh_site
    with site.api("alice") as client:
        first = client.post("/api/v1/deploy/trigger", json={"environment": "slow"}).json()
    site.wait_for_file(f"sleep-{first['run_uuid']}.pid")
    site.stop()  # a clean stop ends its runs: they are interrupted, not left running
    assert run_processes(first["run_uuid"]) == []
    with site.store() as store:
        assert store.get_run(first["id"])["status"] == "interrupted"

    site.start()
    with site.api("alice") as client:
        deadline = time.monotonic() + 60
        while True:  # the lock release of the interrupted run may still be going
            second = client.post("/api/v1/deploy/trigger", json={"environment": "slow"})
            if second.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert second.status_code == 201, second.text
        third = client.post("/api/v1/deploy/trigger", json={"environment": "slow"})
        assert third.status_code == 409 and third.json()["running_id"] == second.json()["id"]
        client.post(f"/api/v1/deploy/cancel/{second.json()['id']}")


def test_there_is_no_default_account(tmp_path):
    site = Site(tmp_path)
    site.start()
    try:
        for name, password in (("admin", "admin"), ("root", "root"), ("admin", "")):
            token = site.url + "/login"
            with httpx.Client() as client:
                form = client.get(token).text
                csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
                response = client.post(token, data={"name": name, "password": password,
                                                    "csrf_token": csrf})
            assert response.status_code in (401, 422)
        refused = site.cli("adduser", "ops", "--role", "deployer", stdin="x" * 20 + "\n")
        assert refused.returncode == 1 and "at least one environment" in refused.stderr
        short = site.cli("adduser", "ops", "--role", "admin", stdin="short\n")
        assert short.returncode == 1 and "at least 12 characters" in short.stderr
        unknown = site.cli("adduser", "ops", "--role", "deployer", "--env", "mars",
                           stdin="x" * 20 + "\n")
        assert unknown.returncode == 1 and "unknown environments ['mars']" in unknown.stderr
        created = site.cli("adduser", "ops", "--role", "admin", stdin="x" * 20 + "\n")
        assert created.returncode == 0 and created.stdout == "created admin ops\n"
    finally:
        site.stop()
