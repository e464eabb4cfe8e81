"""slipway.django.fk_orphans against a single DELETE ... WHERE NOT EXISTS, side by side.

For each engine, on a throw-away server: build PARENTS tasks and CHILDREN task_logs of which
ORPHAN_FRACTION point at missing tasks (spread evenly over the key range, task_id indexed as
Django does), then on a fresh copy each:
  (a) run the module (action=delete) through ansible-playbook,
  (b) run one DELETE ... WHERE NOT EXISTS in one transaction,
while two writers insert single rows in a loop (valid task_logs rows; new tasks) and record
each insert's latency.

    .venv/bin/python benchmarks/fk_orphans.py                       # 1M parents, 5M children
    .venv/bin/python benchmarks/fk_orphans.py --parents 100000 --children 500000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import pymysql

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from dbservers import mariadb_server, postgresql_server  # noqa: E402

TEMPLATE = "fk_bench_template"
SINGLE_DELETE = ("DELETE FROM task_logs WHERE NOT EXISTS"
                 " (SELECT 1 FROM tasks WHERE tasks.id = task_logs.task_id)")


class Engine:
    """Connect, build the data set and copy it, for one running server."""

    def __init__(self, server):
        self.server = server
        self.name = server.engine

    def connect(self, database: str | None = None, autocommit: bool = True):
        s = self.server
        if self.name == "postgresql":
            conn = psycopg2.connect(host=s.host, port=s.port, user=s.user, password=s.password,
                                    dbname=database or "postgres")
            conn.autocommit = autocommit
            return conn
        return pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password,
                               database=database, autocommit=autocommit)

    def run(self, database: str | None, *statements: str) -> None:
        conn = self.connect(database)
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
        conn.close()

    def scalar(self, database: str, query: str):
        conn = self.connect(database)
        with conn.cursor() as cur:
            cur.execute(query)
            value = cur.fetchone()[0]
        conn.close()
        return value

    def build_template(self, parents: int, children: int, every: int) -> None:
        def task_id(n: str) -> str:
            """Every `every`-th row points past the last task; the others spread over them."""
            return (f"CASE WHEN {n} % {every} = 0 THEN {parents} + {n}"
                    f" ELSE ({n} * 7919) % {parents} + 1 END")

        if self.name == "postgresql":
            self.run(None, f"CREATE DATABASE {TEMPLATE}")
            self.run(TEMPLATE,
                     "CREATE TABLE tasks (id bigint PRIMARY KEY, title text NOT NULL)",
                     f"INSERT INTO tasks SELECT g, 'task ' || g"
                     f" FROM generate_series(1, {parents}) g",
                     "CREATE TABLE task_logs (id bigserial PRIMARY KEY, task_id bigint NOT NULL,"
                     " message text NOT NULL)",
                     f"INSERT INTO task_logs (task_id, message) SELECT {task_id('g::bigint')},"
                     f" 'log line ' || g"
                     f" FROM generate_series(1, {children}) g",
                     "CREATE INDEX task_logs_task_id ON task_logs (task_id)",
                     "VACUUM ANALYZE")
        else:
            self.run(None, f"CREATE DATABASE {TEMPLATE}")
            self.run(TEMPLATE,
                     "CREATE TABLE tasks (id bigint PRIMARY KEY, title varchar(100) NOT NULL)",
                     f"INSERT INTO tasks SELECT seq, CONCAT('task ', seq) FROM seq_1_to_{parents}",
                     "CREATE TABLE task_logs (id bigint AUTO_INCREMENT PRIMARY KEY,"
                     " task_id bigint NOT NULL, message varchar(100) NOT NULL, KEY (task_id))",
                     f"INSERT INTO task_logs (task_id, message) SELECT {task_id('seq')},"
                     f" CONCAT('log line ', seq) FROM seq_1_to_{children}",
                     "ANALYZE TABLE tasks, task_logs")

    def copy(self, database: str) -> None:
        if self.name == "postgresql":
            self.run(None, f"CREATE DATABASE {database} TEMPLATE {TEMPLATE}")
            return
        statements = [f"CREATE DATABASE {database}"]
        for table in ("tasks", "task_logs"):
            statements += [f"CREATE TABLE {database}.{table} LIKE {TEMPLATE}.{table}",
                           f"INSERT INTO {database}.{table} SELECT * FROM {TEMPLATE}.{table}"]
        self.run(None, *statements, f"ANALYZE TABLE {database}.tasks, {database}.task_logs")

    def drop(self, database: str) -> None:
        self.run(None, f"DROP DATABASE {database}")


class Writer(threading.Thread):
    """Inserts single rows, autocommit, until stopped; records each insert's latency.

    kind "child": a task_logs row pointing at an existing task (the application logging).
    kind "parent": a new task, with an id above every reference (the application creating work).
    """

    def __init__(self, engine: Engine, database: str, kind: str, parents: int, children: int,
                 limit: int = 1_000_000):
        super().__init__(daemon=True)
        self.conn = engine.connect(database)
        self.kind = kind
        self.parents = parents
        self.next_task = parents + children + 1
        self.limit = limit
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _insert(self, cur, rng: random.Random) -> None:
        if self.kind == "child":
            cur.execute("INSERT INTO task_logs (task_id, message) VALUES (%s, 'writer')",
                        (rng.randint(1, self.parents),))
        else:
            cur.execute("INSERT INTO tasks (id, title) VALUES (%s, 'writer')", (self.next_task,))
            self.next_task += 1

    def run(self) -> None:
        rng = random.Random(1)
        with self.conn.cursor() as cur:
            while not self.stop.is_set() and len(self.latencies) < self.limit:
                started = time.perf_counter()
                try:
                    self._insert(cur, rng)
                except (psycopg2.Error, pymysql.err.MySQLError) as error:
                    self.errors.append(str(error))
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.005)

    def finish(self) -> dict:
        self.stop.set()
        self.join()
        self.conn.close()
        ordered = sorted(self.latencies)
        return {f"{self.kind}_inserts": len(ordered), f"{self.kind}_errors": len(self.errors),
                f"{self.kind}_worst_ms": round(ordered[-1] * 1000, 1) if ordered else None,
                f"{self.kind}_p99_ms": (round(ordered[int(len(ordered) * 0.99)] * 1000, 1)
                                        if ordered else None)}


def run_module(engine: Engine, database: str, batch_size: int) -> dict:
    s = engine.server
    args = dict(engine=engine.name, login_host=s.host, login_port=s.port, login_user=s.user,
                login_password=s.password, login_db=database, action="delete",
                batch_size=batch_size, max_fraction=0.2,
                relations=[dict(table="task_logs", column="task_id", references_table="tasks")])
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"slipway.django.fk_orphans": args}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as playbook:
        json.dump(play, playbook)
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               PATH=f"{VENV_BIN}:{os.environ['PATH']}",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    try:
        completed = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}", playbook.name],
            cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        os.unlink(playbook.name)
    result = json.loads(completed.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    if result.get("failed"):
        raise RuntimeError(result.get("msg"))
    return result["relations"][0]


def run_single_delete(engine: Engine, database: str) -> int:
    conn = engine.connect(database, autocommit=False)
    with conn.cursor() as cur:
        if engine.name == "mysql":
            # Keep a materialized parent set in memory: on-disk temporary tables under /tmp
            # were being removed by other test runs on the shared host.
            cur.execute("SET SESSION tmp_table_size = 1073741824,"
                        " max_heap_table_size = 1073741824")
        cur.execute(SINGLE_DELETE)
        deleted = cur.rowcount
    conn.commit()
    conn.close()
    return deleted


def measure(engine: Engine, variant: str, args) -> dict:
    database = f"fk_bench_{variant}"
    engine.copy(database)
    rows_before = engine.scalar(database, "SELECT count(*) FROM task_logs")
    writers = [Writer(engine, database, kind, args.parents, args.children)
               for kind in ("child", "parent")]
    for writer in writers:
        writer.start()
    time.sleep(0.5)
    started = time.perf_counter()
    if variant == "module":
        relation = run_module(engine, database, args.batch_size)
        deleted, module_seconds = relation["deleted"], relation["seconds"]
    else:
        deleted, module_seconds = run_single_delete(engine, database), None
    wall = time.perf_counter() - started
    time.sleep(0.5)
    latency = {}
    for writer in writers:
        latency.update(writer.finish())
    rows_after = engine.scalar(database, "SELECT count(*) FROM task_logs")
    writer_rows = engine.scalar(database, "SELECT count(*) FROM task_logs WHERE message = 'writer'")
    engine.drop(database)
    return dict(engine=engine.name, variant=variant, deleted=deleted, wall_seconds=round(wall, 2),
                module_seconds=module_seconds, rows_before=rows_before, rows_after=rows_after,
                writer_rows_kept=writer_rows, **latency)


def bench_engine(server_factory, args) -> list:
    results = []
    with server_factory() as server:
        engine = Engine(server)
        started = time.perf_counter()
        engine.build_template(args.parents, args.children, round(1 / args.orphan_fraction))
        print(f"[{engine.name}] built {args.parents} parents / {args.children} children in"
              f" {time.perf_counter() - started:.0f}s", flush=True)
        for variant in ("module", "single"):
            result = measure(engine, variant, args)
            print(f"[{engine.name}] {json.dumps(result)}", flush=True)
            results.append(result)
    return results


def summary(results: list) -> str:
    lines = ["", f"{'engine':<11} {'variant':<8} {'deleted':>8} {'total s':>8} {'module s':>9}"
                 f" {'worst child insert ms':>22} {'worst parent insert ms':>23} {'errors':>6}"]
    for r in results:
        lines.append(f"{r['engine']:<11} {r['variant']:<8} {r['deleted']:>8} {r['wall_seconds']:>8}"
                     f" {r['module_seconds'] or '-':>9} {r['child_worst_ms']:>22}"
                     f" {r['parent_worst_ms']:>23} {r['child_errors'] + r['parent_errors']:>6}")
    for engine in dict.fromkeys(r["engine"] for r in results):
        pair = {r["variant"]: r for r in results if r["engine"] == engine}
        if len(pair) == 2:
            module, single = pair["module"], pair["single"]
            lines.append(
                f"{engine}: module/single total time"
                f" {module['wall_seconds'] / single['wall_seconds']:.2f}x (module's own time"
                f" {module['module_seconds'] / single['wall_seconds']:.2f}x; the rest is"
                f" ansible-playbook start-up); worst insert"
                f" {max(module['child_worst_ms'], module['parent_worst_ms'])} ms vs"
                f" {max(single['child_worst_ms'], single['parent_worst_ms'])} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parents", type=int, default=1_000_000)
    parser.add_argument("--children", type=int, default=5_000_000)
    parser.add_argument("--orphan-fraction", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--engines", default="postgresql,mysql")
    args = parser.parse_args()
    factories = {"postgresql": postgresql_server, "mysql": mariadb_server}
    results = []
    for name in args.engines.split(","):
        results += bench_engine(factories[name], args)
    print(summary(results))


if __name__ == "__main__":
    main()
