"""fk_orphans while other sessions write: re-checks, concurrent inserts and lock retries."""

from __future__ import annotations

import random
import sys
import threading
import time

import pytest
from fk_orphans_helpers import (
    ISSUE_ORPHANS,
    ROOT,
    Database,
    load_bulk,
    module_connection,
    run_module,
)

sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from ansible_collections.slipway.django.plugins.module_utils.fk_orphans import (  # noqa: E402
    Relation,
    clean,
    make_dialect,
    plan_relation,
    resolve_relation,
)


@pytest.mark.parametrize("action", ["delete", "nullify", "archive"])
def test_a_row_whose_parent_appears_after_planning_is_left_alone(seeded, action):
    server, name, db = seeded
    connection = module_connection(server, name)
    dialect = make_dialect(server.engine, connection)
    relation = resolve_relation(dialect, Relation("issues", "task_id", "tasks"), action, False,
                                dialect.declared_foreign_keys())
    plan = plan_relation(dialect, relation, action, False)
    assert plan.keys == ISSUE_ORPHANS
    db.run("INSERT INTO tasks (id, title) VALUES (1030, 'arrived late')")
    clean(dialect, plan, batch_size=2)
    connection.close()
    assert db.scalar("SELECT task_id FROM issues WHERE id = 30") == 1030
    assert plan.deleted + plan.nullified + plan.archived == len(ISSUE_ORPHANS) - 1
    if action == "archive":
        assert db.ids("issues_orphans") == [15, 45]


class Writer(threading.Thread):
    """Inserts valid task_logs rows one by one, autocommit, until stopped."""

    def __init__(self, server, name: str, tasks: int):
        super().__init__(daemon=True)
        self.db = Database(server, name)
        self.tasks = tasks
        self.stop = threading.Event()
        self.ids: list[int] = []

    def run(self) -> None:
        rng = random.Random(7)
        with self.db.conn.cursor() as cur:
            while not self.stop.is_set():
                values = (rng.randint(1, self.tasks),)
                if self.db.engine == "postgresql":
                    cur.execute("INSERT INTO task_logs (task_id, message) VALUES (%s, 'writer')"
                                " RETURNING id", values)
                    self.ids.append(cur.fetchone()[0])
                else:
                    cur.execute("INSERT INTO task_logs (task_id, message) VALUES (%s, 'writer')",
                                values)
                    self.ids.append(cur.lastrowid)
                time.sleep(0.002)

    def finish(self) -> list:
        self.stop.set()
        self.join()
        self.db.close()
        return self.ids


def test_concurrent_writer_keeps_every_row_it_inserts_during_a_cleanup(target):
    server, name, db = target
    orphans = load_bulk(db, tasks=1000, logs=60000, every=4)
    writer = Writer(server, name, tasks=1000)
    writer.start()
    result = run_module(server, name, action="archive", batch_size=500, max_fraction=0.3,
                        relations=[{"table": "task_logs", "column": "task_id",
                                    "references_table": "tasks"}])
    written = writer.finish()
    assert not result.get("failed"), result.get("msg")
    assert result["relations"][0]["archived"] == orphans
    assert written
    kept = set(db.column("SELECT id FROM task_logs WHERE message = 'writer'"))
    assert kept == set(written)
    assert db.scalar("SELECT count(*) FROM task_logs") == 60000 - orphans + len(written)
    assert db.scalar("SELECT count(*) FROM task_logs_orphans WHERE message = 'writer'") == 0


def test_add_constraint_retries_until_a_long_transaction_lets_go(seeded):
    server, name, db = seeded
    holder = Database(server, name)
    holder.conn.autocommit = False
    with holder.conn.cursor() as cur:
        # An open transaction that wrote to tasks holds a lock the new key has to wait for.
        cur.execute("UPDATE tasks SET title = 'busy' WHERE id = 1")
    release = threading.Timer(2.5, holder.conn.commit)
    release.start()
    result = run_module(server, name, action="delete", add_constraint=True, lock_timeout=0.5,
                        lock_retries=6, relations=[{"table": "ai_outputs", "column": "task_id",
                                                    "references_table": "tasks"}])
    release.join()
    holder.close()
    assert not result.get("failed"), result.get("msg")
    assert result["relations"][0]["constraint_added"] is True
    assert db.scalar("SELECT count(*) FROM information_schema.table_constraints"
                     " WHERE constraint_name = 'ai_outputs_task_id_fk_tasks_id'") == 1
