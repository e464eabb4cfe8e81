"""The history store's API, which the console will use, on each engine."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from deploy_history_helpers import new_run_uuid

from slipway.history.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    HistoryStore,
    HistoryStoreError,
    Spool,
    utcnow,
)


def _start(store: HistoryStore, **fields) -> int:
    return store.apply(new_run_uuid(), [("start", {"environment": "prod", "deployed_by": "bob",
                                                   **fields})])


def _run_together(target, count: int) -> None:
    """target() in count threads started at once; returns when all have ended."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_schema_is_created_once_when_many_writers_start_together(store_url):
    errors = []

    def open_and_write():
        try:
            with HistoryStore(store_url) as store:
                _start(store)
        except HistoryStoreError as exc:
            errors.append(exc)

    _run_together(open_and_write, 6)

    assert errors == []
    with HistoryStore(store_url) as store:
        assert [row["version"] for row in store.dump()["deploy_history_schema_version"]] == list(
            range(1, SCHEMA_VERSION + 1))
        assert store.count_runs() == 6


def test_a_store_of_schema_1_is_upgraded_and_keeps_its_runs(store_url):
    """A store written before runs had kinds gets the command columns; its runs stay, kindless."""
    with HistoryStore(store_url) as store:
        with store._transaction() as cursor:
            store._schema_version(cursor)
            for statement in _MIGRATIONS[0](store.dialect):
                store._execute(cursor, statement)
            store._execute(cursor, "INSERT INTO deploy_history_schema_version (version, "
                           "applied_at) VALUES (?, ?)", (1, utcnow()))
            earlier = utcnow() - timedelta(days=1)
            store._execute(cursor, "INSERT INTO deploy_history (run_uuid, environment, "
                           "deployed_by, started_at, created_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           (new_run_uuid(), "prod", "alice", earlier, earlier, earlier))
    with HistoryStore(store_url) as store:
        command_id = _start(store, kind="command", command="backfill_po --days 7",
                            command_rc=0, command_output="10 orders")
        assert store.schema_version() == SCHEMA_VERSION
        assert [(run["deployed_by"], run["kind"]) for run in store.list_runs()] == [
            ("bob", "command"), ("alice", None)]
        assert [run["id"] for run in store.list_runs(kind="command")] == [command_id]
        run = store.get_run(command_id)
        assert (run["command"], run["command_rc"], run["command_output"]) == (
            "backfill_po --days 7", 0, "10 orders")


def test_runs_writing_at_once_all_finish(store_url):
    """Eight runs writing their hosts, tasks and ends at the same moment, round after round:
    a deadlock between them is tried again, never left as a run stuck in 'running'."""
    with HistoryStore(store_url) as store:
        store.ensure_schema()
    errors = []
    barrier = threading.Barrier(8)
    task = {"host": "web1", "play": "p", "task": "t", "action": "ping", "status": "ok",
            "changed": 0, "started_at": utcnow(), "duration_ms": 3, "message": None}

    def write_one_run():
        try:
            with HistoryStore(store_url) as store:
                run_uuid = new_run_uuid()
                store.apply(run_uuid, [("start", {"environment": "prod", "deployed_by": "bob"})])
                for _ in range(5):
                    barrier.wait(timeout=60)
                    store.apply(run_uuid, [("tasks", [task, task]),
                                           ("hosts", {"web1": {"ok": 2}, "web2": {"ok": 1}}),
                                           ("log", "ok: [web1]\n")])
                barrier.wait(timeout=60)
                store.apply(run_uuid, [("hosts", {"web1": {"ok": 3}, "web2": {"ok": 2}}),
                                       ("finish", {"status": "success"})])
        except (HistoryStoreError, threading.BrokenBarrierError) as exc:
            errors.append(exc)
            barrier.abort()

    _run_together(write_one_run, 8)

    assert errors == []
    with HistoryStore(store_url) as store:
        runs = store.list_runs(limit=20)
        assert [run["status"] for run in runs] == ["success"] * 8
        assert all(len(store.task_results(run["id"])) == 10 for run in runs)
        assert len(store.dump()["deploy_host_summary"]) == 16


def test_log_can_be_followed_from_an_offset_while_it_grows(store_url):
    with HistoryStore(store_url) as store:
        run_uuid = new_run_uuid()
        deploy_id = store.apply(run_uuid, [("start", {"environment": "prod",
                                                      "deployed_by": "bob"}),
                                           ("log", "PLAY [x]\n")])
        first, offset, status = store.read_log(deploy_id)
        store.apply(run_uuid, [("log", "ok: [web1] é\n"), ("finish", {"status": "success"})])
        rest, end, final = store.read_log(deploy_id, offset)

    assert (first, status) == ("PLAY [x]\n", "running")
    assert (rest, final) == ("ok: [web1] é\n", "success")
    assert end == len(first + rest)


def test_a_second_start_fills_only_what_the_first_left_empty(store_url):
    # The console writes the row first; the callback's own start then adds its columns.
    with HistoryStore(store_url) as store:
        run_uuid = new_run_uuid()
        deploy_id = store.apply(run_uuid, [("start", {"environment": "staging",
                                                      "deployed_by": "alice",
                                                      "skip_tags": "build"})])
        store.apply(run_uuid, [("start", {"environment": "default", "deployed_by": "root",
                                          "skip_tags": "other", "tags": "deploy",
                                          "host_limit": "web1", "pid": 4242})])
        run = store.get_run(deploy_id)

    assert store.count_runs() == 1
    assert (run["environment"], run["deployed_by"], run["skip_tags"]) == (
        "staging", "alice", "build")
    assert (run["tags"], run["host_limit"], run["pid"]) == ("deploy", "web1", 4242)


def test_prune_soft_deletes_old_finished_runs_only(store_url):
    with HistoryStore(store_url) as store:
        old_done = _start(store)
        store.apply(store.get_run(old_done)["run_uuid"], [("log", "old log\n"),
                                                          ("finish", {"status": "failed"})])
        still_running = _start(store)
        later = utcnow() + timedelta(days=100)

        assert store.prune(timedelta(days=90), now=later) == 1

        assert (store.get_run(old_done)["is_deleted"], store.get_run(old_done)["logs"]) == (
            "Y", None)
        assert store.get_run(still_running)["is_deleted"] == "N"
        assert [run["id"] for run in store.list_runs()] == [still_running]
        assert store.count_runs(include_deleted=True) == 2


def test_spooled_batches_are_replayed_once_and_removed(store_url, tmp_path):
    with HistoryStore(store_url) as store:
        spool = Spool(str(tmp_path / "spool"), store.key)
        run_uuid = new_run_uuid()
        spool.append(run_uuid, [("start", {"environment": "prod", "deployed_by": "bob",
                                           "started_at": utcnow()}),
                                ("tasks", [{"host": "web1", "task": "t", "status": "ok",
                                            "changed": 0, "started_at": utcnow()}])])
        spool.append(run_uuid, [("finish", {"status": "success", "completed_at": utcnow()})])
        spool.close()

        assert spool.replay(store) == [run_uuid]
        assert spool.replay(store) == []

        run = store.find_run(run_uuid)
        assert run["status"] == "success"
        assert len(store.task_results(run["id"])) == 1


def test_spool_file_of_a_run_still_writing_is_left_alone(store_url, tmp_path):
    with HistoryStore(store_url) as store:
        spool = Spool(str(tmp_path / "spool"), store.key)
        spool.append(new_run_uuid(), [("start", {"environment": "prod", "deployed_by": "bob"})])

        assert Spool(str(tmp_path / "spool"), store.key).replay(store) == []
        spool.close()


def test_a_store_newer_than_the_code_is_refused(store_url):
    with HistoryStore(store_url) as store:
        store.ensure_schema()
        store.apply(new_run_uuid(), [("start", {"environment": "prod", "deployed_by": "bob"})])
        with store._transaction() as cursor:
            store._execute(cursor, "INSERT INTO deploy_history_schema_version (version, "
                           "applied_at) VALUES (?, ?)", (SCHEMA_VERSION + 1, utcnow()))

    with HistoryStore(store_url) as store, pytest.raises(HistoryStoreError, match="newer"):
        store.list_runs()


def test_stale_runs_of_dead_processes_on_this_controller_are_interrupted(store_url):
    with HistoryStore(store_url) as store:
        dead = _start(store, controller="ctl", pid=111)
        alive = _start(store, controller="ctl", pid=222)
        elsewhere = _start(store, controller="other", pid=111)

        assert store.mark_stale_runs("ctl", lambda pid: pid == 222) == [dead]

        assert [store.get_run(i)["status"] for i in (dead, alive, elsewhere)] == [
            "interrupted", "running", "running"]


def test_a_spool_file_cut_short_by_a_kill_is_replayed_up_to_the_cut(store_url, tmp_path):
    with HistoryStore(store_url) as store:
        spool = Spool(str(tmp_path / "spool"), store.key)
        run_uuid = new_run_uuid()
        spool.append(run_uuid, [("start", {"environment": "prod", "deployed_by": "bob"})])
        spool.close()
        with open(spool.directory / f"{run_uuid}.jsonl", "a") as handle:
            handle.write('{"run_uuid": "x", "ops": [["log", "half a li')

        assert spool.replay(store) == [run_uuid]
        assert store.find_run(run_uuid)["status"] == "running"


def test_a_spool_file_the_store_refuses_is_set_aside(store_url, tmp_path):
    with HistoryStore(store_url) as store:
        spool = Spool(str(tmp_path / "spool"), store.key)
        good, bad = new_run_uuid(), new_run_uuid()
        spool.append(bad, [("update", {"no_such_column": 1})])
        spool.append(good, [("start", {"environment": "prod", "deployed_by": "bob"})])
        spool.close()

        assert spool.replay(store) == [good]
        assert [path.suffix for path in spool.directory.iterdir()] == [".rejected"]
