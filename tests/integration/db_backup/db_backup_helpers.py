"""App databases owned by their own login user, and an ansible-playbook runner for the
db_backup tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import ansible_task
import psycopg2
import pymysql

# Characters that break naive quoting on a command line or in an option file.
PASSWORD_TAIL = "#'\" \\;$`x"

SCHEMA = {
    "postgresql": [
        "CREATE TABLE customer (id serial PRIMARY KEY, name text NOT NULL)",
        "CREATE TABLE orders (id serial PRIMARY KEY, customer_id integer NOT NULL"
        " REFERENCES customer (id), total numeric(10, 2) NOT NULL, note text)",
        "CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100",
        "INSERT INTO customer (name) SELECT 'customer ' || g FROM generate_series(1, 20) g",
        "INSERT INTO orders (customer_id, total, note) SELECT g % 20 + 1, g * 3.5,"
        " 'order ' || g FROM generate_series(1, 60) g",
    ],
    "mysql": [
        "CREATE TABLE customer (id int AUTO_INCREMENT PRIMARY KEY, name varchar(100) NOT NULL)"
        " ENGINE=InnoDB",
        "CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL,"
        " total decimal(10, 2) NOT NULL, note text, FOREIGN KEY (customer_id)"
        " REFERENCES customer (id)) ENGINE=InnoDB",
        "CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100",
        "INSERT INTO customer (name) SELECT CONCAT('customer ', seq) FROM seq_1_to_20",
        "INSERT INTO orders (customer_id, total, note) SELECT seq % 20 + 1, seq * 3.5,"
        " CONCAT('order ', seq) FROM seq_1_to_60",
    ],
}


class AppDatabase:
    """A database owned by (PostgreSQL) or granted to (MySQL) its own unprivileged user, as
    the postgresql and mysql roles set it up; the user's autocommit connection."""

    def __init__(self, server, name: str, user: str, password: str):
        self.server = server
        self.engine = server.engine
        self.name = name
        self.user = user
        self.password = password
        if self.engine == "postgresql":
            self.conn = psycopg2.connect(host=server.host, port=server.port, user=user,
                                         password=password, dbname=name)
            self.conn.autocommit = True
        else:
            self.conn = pymysql.connect(host=server.host, port=server.port, user=user,
                                        password=password, database=name, autocommit=True)

    def module_args(self, **options) -> dict:
        return {"engine": self.engine, "db": self.name, "login_host": self.server.host,
                "login_port": self.server.port, "login_user": self.user,
                "login_password": self.password, **options}

    def run(self, *statements: str) -> None:
        with self.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def rows(self, query: str) -> list:
        with self.conn.cursor() as cur:
            cur.execute(query)
            return [tuple(row) for row in cur.fetchall()]

    def tables(self) -> list:
        if self.engine == "postgresql":
            query = ("SELECT table_name FROM information_schema.tables"
                     " WHERE table_schema = 'public' ORDER BY 1")
        else:
            query = ("SELECT table_name FROM information_schema.tables"
                     f" WHERE table_schema = '{self.name}' ORDER BY 1")
        return [row[0] for row in self.rows(query)]

    def snapshot(self) -> dict:
        """Everything the tests change, to compare before and after."""
        return {"tables": self.tables(),
                "customer": self.rows("SELECT id, name FROM customer ORDER BY id"),
                "orders": self.rows("SELECT id, customer_id, total, note FROM orders"
                                    " ORDER BY id"),
                "big_orders": self.rows("SELECT count(*) FROM big_orders")}

    def close(self) -> None:
        self.conn.close()


def create_app_database(server) -> AppDatabase:
    name = f"app_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex[:12] + PASSWORD_TAIL
    if server.engine == "postgresql":
        admin = psycopg2.connect(host=server.host, port=server.port, user=server.user,
                                 password=server.password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOCREATEDB PASSWORD %s',
                        (password,))
            cur.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    else:
        admin = pymysql.connect(host=server.host, port=server.port, user=server.user,
                                password=server.password, autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            cur.execute(f"CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL ON `{name}`.* TO '{name}'@'127.0.0.1'")
    admin.close()
    db = AppDatabase(server, name, name, password)
    db.run(*SCHEMA[server.engine])
    return db


def drop_app_database(db: AppDatabase) -> None:
    db.close()
    server = db.server
    if server.engine == "postgresql":
        admin = psycopg2.connect(host=server.host, port=server.port, user=server.user,
                                 password=server.password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
            cur.execute(f'DROP ROLE IF EXISTS "{db.user}"')
    else:
        admin = pymysql.connect(host=server.host, port=server.port, user=server.user,
                                password=server.password, autocommit=True)
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
            cur.execute(f"DROP USER IF EXISTS '{db.user}'@'127.0.0.1'")
    admin.close()


def run_tasks(*tasks: dict, check: bool = False) -> list:
    """Run slipway.django.db_backup once per options dict, in one play through
    ansible-playbook (errors ignored); the tasks' results in order.

    An options dict may carry ``_environment`` for the task's environment and ``_module`` for
    another module than db_backup (``db_backup_info``)."""
    play_tasks = []
    for number, options in enumerate(tasks):
        options = dict(options)
        environment = options.pop("_environment", {})
        module = options.pop("_module", "db_backup")
        play_tasks.append({"name": f"{module} {number}", f"slipway.django.{module}": options,
                           "environment": environment, "check_mode": check,
                           "ignore_errors": True})
    return ansible_task.run_tasks(play_tasks)


def run_module(check: bool = False, **options) -> dict:
    return run_tasks(options, check=check)[0]


def succeeded(result: dict) -> dict:
    assert not result.get("failed"), result.get("msg")
    return result


def tree(path: Path) -> dict:
    """{relative path: (mode, uid, gid, size, mtime_ns)} of everything under path."""
    entries = {}
    for item in sorted(path.rglob("*")):
        stat = item.lstat()
        entries[str(item.relative_to(path))] = (stat.st_mode & 0o7777, stat.st_uid,
                                                stat.st_gid, stat.st_size, stat.st_mtime_ns)
    return entries
