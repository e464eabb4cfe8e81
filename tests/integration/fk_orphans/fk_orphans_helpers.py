"""Seed schema, direct SQL access and an ansible-playbook runner for the fk_orphans tests."""

from __future__ import annotations

from pathlib import Path

import ansible_task
import psycopg2
import pymysql

ROOT = Path(__file__).resolve().parents[3]

# Seed 001's tables; ids are explicit so tests know which rows are orphans.
TASKS = range(1, 21)
AI_OUTPUT_ORPHANS = [13, 26, 39, 52, 65]
ISSUE_ORPHANS = [15, 30, 45]
ISSUE_NULLS = [11, 22, 33, 44]
TASK_LOG_ORPHANS = [16, 32]

SCHEMA = {
    "postgresql": [
        "CREATE TABLE tasks (id bigint PRIMARY KEY, title varchar(200) NOT NULL)",
        "CREATE TABLE ai_outputs (id bigserial PRIMARY KEY, task_id bigint NOT NULL,"
        " content text)",
        "CREATE TABLE issues (id bigserial PRIMARY KEY, task_id bigint NULL, description text)",
        "CREATE TABLE task_logs (id bigserial PRIMARY KEY, task_id bigint NOT NULL,"
        " message text, CONSTRAINT task_logs_task_id_fk FOREIGN KEY (task_id)"
        " REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED)",
    ],
    "mysql": [
        "CREATE TABLE tasks (id bigint PRIMARY KEY, title varchar(200) NOT NULL) ENGINE=InnoDB",
        "CREATE TABLE ai_outputs (id bigint AUTO_INCREMENT PRIMARY KEY, task_id bigint NOT NULL,"
        " content longtext) ENGINE=InnoDB",
        "CREATE TABLE issues (id bigint AUTO_INCREMENT PRIMARY KEY, task_id bigint NULL,"
        " description longtext) ENGINE=InnoDB",
        "CREATE TABLE task_logs (id bigint AUTO_INCREMENT PRIMARY KEY, task_id bigint NOT NULL,"
        " message longtext, CONSTRAINT task_logs_task_id_fk FOREIGN KEY (task_id)"
        " REFERENCES tasks (id)) ENGINE=InnoDB",
    ],
}

# Rows that break a declared key can only be loaded with its checks off, as a dump restore does.
CHECKS_OFF = {"postgresql": "SET session_replication_role = replica",
              "mysql": "SET foreign_key_checks = 0"}
CHECKS_ON = {"postgresql": "SET session_replication_role = origin",
             "mysql": "SET foreign_key_checks = 1"}

SEED_RELATIONS = [
    {"table": "ai_outputs", "column": "task_id", "references_table": "tasks"},
    {"table": "issues", "column": "task_id", "references_table": "tasks"},
    {"table": "task_logs", "column": "task_id", "references_table": "tasks"},
]


class Database:
    """Autocommit access to one test database, for setting up and checking outcomes."""

    def __init__(self, server, name: str):
        self.engine = server.engine
        if self.engine == "postgresql":
            self.conn = psycopg2.connect(host=server.host, port=server.port, user=server.user,
                                         password=server.password, dbname=name)
            self.conn.autocommit = True
        else:
            self.conn = pymysql.connect(host=server.host, port=server.port, user=server.user,
                                        password=server.password, database=name,
                                        autocommit=True)

    def run(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def insert(self, table: str, columns: tuple, rows: list) -> None:
        marks = ", ".join(["%s"] * len(columns))
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def scalar(self, query: str, params=()):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()[0]

    def column(self, query: str, params=()) -> list:
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return [row[0] for row in cur.fetchall()]

    def ids(self, table: str, where: str = "1 = 1") -> list:
        return self.column(f"SELECT id FROM {table} WHERE {where} ORDER BY id")

    def close(self) -> None:
        self.conn.close()


def load_seed(db: Database) -> None:
    """Seed 001's schema with orphans in every child table; issues also has NULL references."""
    db.run(*SCHEMA[db.engine])
    db.insert("tasks", ("id", "title"), [(i, f"task {i}") for i in TASKS])
    db.insert("ai_outputs", ("id", "task_id", "content"), [
        (i, 1000 + i if i in AI_OUTPUT_ORPHANS else i % 20 + 1, f"output {i}")
        for i in range(1, 66)])
    db.insert("issues", ("id", "task_id", "description"), [
        (i, 1000 + i if i in ISSUE_ORPHANS else None if i in ISSUE_NULLS else i % 20 + 1,
         f"issue {i}") for i in range(1, 48)])
    db.run(CHECKS_OFF[db.engine])
    db.insert("task_logs", ("id", "task_id", "message"), [
        (i, 1000 + i if i in TASK_LOG_ORPHANS else i % 20 + 1, f"log {i}")
        for i in range(1, 33)])
    db.run(CHECKS_ON[db.engine])


def connection_args(server, database: str, socket: bool = False) -> dict:
    args = {"engine": server.engine, "login_user": server.user,
            "login_password": server.password, "login_db": database}
    if socket:
        # libpq names its socket file after the port, so PostgreSQL still needs login_port.
        if server.engine == "postgresql":
            args.update(login_unix_socket=server.socket_dir, login_port=server.port)
        else:
            args["login_unix_socket"] = server.socket_path
    else:
        args.update(login_host=server.host, login_port=server.port)
    return args


def run_module(server, database: str, check: bool = False, diff: bool = False,
               socket: bool = False, **options) -> dict:
    """Run slipway.django.fk_orphans through ansible-playbook; return the task's result."""
    task = {"name": "fk_orphans", "slipway.django.fk_orphans": {
        **connection_args(server, database, socket), **options},
        "check_mode": check, "diff": diff, "ignore_errors": True}
    return ansible_task.run_tasks([task])[0]


def by_table(result: dict) -> dict:
    return {entry["table"]: entry for entry in result["relations"]}


def module_connection(server, database: str):
    """A connection made the way the module makes it, with the collection on sys.path."""
    import sys

    collections = str(ROOT / ".cache" / "collections")
    if collections not in sys.path:
        sys.path.insert(0, collections)
    from ansible_collections.slipway.django.plugins.module_utils.database import connect

    params = {"connect_timeout": 10, "login_unix_socket": None,
              **connection_args(server, database)}
    return connect(params)


def load_bulk(db: Database, tasks: int, logs: int, every: int) -> int:
    """tasks parents and logs task_logs rows, every `every`-th one an orphan; the orphan count."""
    db.run(*SCHEMA[db.engine][:1])
    if db.engine == "postgresql":
        db.run("CREATE TABLE task_logs (id bigserial PRIMARY KEY, task_id bigint NOT NULL,"
               " message text)",
               f"INSERT INTO tasks SELECT g, 'task' FROM generate_series(1, {tasks}) g",
               f"INSERT INTO task_logs (task_id, message) SELECT CASE WHEN g % {every} = 0"
               f" THEN {tasks} + g ELSE g % {tasks} + 1 END, 'seed'"
               f" FROM generate_series(1, {logs}) g")
    else:
        db.run("CREATE TABLE task_logs (id bigint AUTO_INCREMENT PRIMARY KEY,"
               " task_id bigint NOT NULL, message varchar(20), KEY (task_id)) ENGINE=InnoDB",
               f"INSERT INTO tasks SELECT seq, 'task' FROM seq_1_to_{tasks}",
               f"INSERT INTO task_logs (task_id, message) SELECT CASE WHEN seq % {every} = 0"
               f" THEN {tasks} + seq ELSE seq % {tasks} + 1 END, 'seed' FROM seq_1_to_{logs}")
    return logs // every
