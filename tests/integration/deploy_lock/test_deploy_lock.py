"""slipway.django.deploy_lock through real ansible-playbook runs on this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ansible_task
from ansible_collections.slipway.django.plugins.modules import deploy_lock


def run_task(args: dict, check: bool = False, diff: bool = False) -> dict:
    return ansible_task.run_task("deploy_lock", args, check=check, diff=diff)


def holder(path: Path) -> dict:
    return json.loads(path.read_text())


def test_a_free_lock_is_taken_and_names_its_holder(tmp_path):
    lock = tmp_path / "locks" / "deploy.lock"

    result = run_task({"path": str(lock), "run_id": "run-a",
                       "owner": {"playbook": "deploy.yml", "environment": "staging"}})

    assert result["changed"] is True and result["acquired"] is True, result
    record = holder(lock)
    assert record["run_id"] == "run-a"
    assert record["playbook"] == "deploy.yml" and record["environment"] == "staging"
    assert record["controller"] == socket.gethostname()
    assert isinstance(record["controller_pid"], int) and record["taken_at"].endswith("Z")
    assert oct(lock.stat().st_mode & 0o777) == "0o644"

    again = run_task({"path": str(lock), "run_id": "run-a"})
    assert again["changed"] is False and again["acquired"] is True
    assert holder(lock) == record


def test_a_second_deploy_stops_at_once_naming_the_holder(tmp_path):
    lock = tmp_path / "deploy.lock"
    # Held by a live process of this controller: this test's own.
    lock.write_text(json.dumps({"run_id": "run-a", "user": "alice", "controller":
                                socket.gethostname(), "controller_pid": os.getpid(),
                                "playbook": "deploy.yml", "taken_at": "2026-11-23T10:00:00Z"}))

    result = run_task({"path": str(lock), "run_id": "run-b", "break_stale": True})

    assert result.get("failed") is True
    assert "run run-a (alice on" in result["msg"] and "deploy.yml" in result["msg"]
    assert "older than 7200 s" in result["msg"]
    assert holder(lock)["run_id"] == "run-a"


def test_a_stale_lock_is_broken_only_when_asked(tmp_path):
    lock = tmp_path / "deploy.lock"
    lock.write_text(json.dumps({"run_id": "run-old", "controller": "elsewhere",
                                "controller_pid": 99}))
    old = time.time() - 3 * 3600
    os.utime(lock, (old, old))

    refused = run_task({"path": str(lock), "run_id": "run-b", "max_age": 3600})
    assert refused.get("failed") is True and "set break_stale" in refused["msg"]
    assert holder(lock)["run_id"] == "run-old"

    broken = run_task({"path": str(lock), "run_id": "run-b", "max_age": 3600,
                       "break_stale": True})
    assert broken["changed"] is True and broken["broken"]["run_id"] == "run-old"
    assert holder(lock)["run_id"] == "run-b"
    kept = list(tmp_path.glob("deploy.lock.broken-*-run-old"))
    assert len(kept) == 1, "the broken lock is kept for the record"


def test_a_lock_left_by_a_dead_run_of_this_controller_is_broken_at_once(tmp_path):
    lock = tmp_path / "deploy.lock"
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(json.dumps({"run_id": "run-dead", "controller": socket.gethostname(),
                                "controller_pid": gone.pid}))

    result = run_task({"path": str(lock), "run_id": "run-b"})

    assert not result.get("failed"), result["msg"]
    assert result["broken"]["run_id"] == "run-dead"
    assert "is gone" in result["msg"]
    assert holder(lock)["run_id"] == "run-b"


def test_release_removes_only_the_runs_own_lock(tmp_path):
    lock = tmp_path / "deploy.lock"
    run_task({"path": str(lock), "run_id": "run-a"})

    other = run_task({"path": str(lock), "run_id": "run-b", "state": "absent"})
    assert other["changed"] is False and "held by run run-a" in other["msg"]
    assert lock.exists()

    mine = run_task({"path": str(lock), "run_id": "run-a", "state": "absent"})
    assert mine["changed"] is True and not lock.exists()

    none = run_task({"path": str(lock), "run_id": "run-a", "state": "absent"})
    assert none["changed"] is False


def test_check_mode_writes_nothing_and_still_refuses(tmp_path):
    lock = tmp_path / "deploy.lock"

    result = run_task({"path": str(lock), "run_id": "run-a"}, check=True, diff=True)
    assert result["changed"] is True and not lock.exists()
    assert '"run_id": "run-a"' in result["diff"]["after"]

    lock.write_text(json.dumps({"run_id": "run-z", "controller": "elsewhere"}))
    refused = run_task({"path": str(lock), "run_id": "run-a"}, check=True)
    assert refused.get("failed") is True


def test_only_one_of_many_simultaneous_takers_creates_the_lock(tmp_path):
    lock = tmp_path / "deploy.lock"
    with ThreadPoolExecutor(16) as pool:
        taken = list(pool.map(lambda run: deploy_lock.write_lock(str(lock), {"run_id": run}),
                              [f"run-{index}" for index in range(64)]))
    assert taken.count(True) == 1
    assert holder(lock)["run_id"] == f"run-{taken.index(True)}"
