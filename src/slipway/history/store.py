"""The deploy history store: one implementation shared by the callback, the CLI and the console.

Plain Python (standard library plus an optional driver), no Ansible imports, so that
``slipway-history`` and the web console can load it outside of Ansible. A store is selected by a
URL: a path to an SQLite file (the default), ``postgresql://...`` (psycopg2) or ``mysql://...``
(PyMySQL). The schema creates and upgrades itself; its version lives in
``deploy_history_schema_version``.

Runs are addressed by ``run_uuid`` while they are written, so that a batch spooled to a local file
while the store was down can be replayed later, into any process, without knowing the row id.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "MASK",
    "RUN_COLUMNS",
    "STATUSES",
    "HistoryStore",
    "HistoryStoreError",
    "KINDS",
    "SecretScrubber",
    "Spool",
    "default_spool_dir",
    "default_store_url",
    "open_store",
    "parse_age",
    "url_passwords",
    "utcnow",
]

SCHEMA_VERSION = 3
STATUSES = ("running", "success", "failed", "cancelled", "interrupted")
FINAL_STATUSES = ("success", "failed", "cancelled", "interrupted")
TASK_STATUSES = ("ok", "failed", "ignored", "skipped", "unreachable")
HOST_COUNTERS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")

# Columns a writer may set on a run, besides the bookkeeping ones (id, created_at, ...).
RUN_COLUMNS = frozenset({
    "environment", "branch", "commit_hash", "status", "deployed_by", "description",
    "error_message", "started_at", "completed_at", "duration", "playbook", "inventory",
    "host_limit", "tags", "skip_tags", "check_mode", "release_id", "app", "extra_vars",
    "controller", "pid", "ansible_version", "kind", "command", "command_rc", "command_output",
})
# What a run did: its playbook's kind; a run of kind ``command`` records one manage.py command.
KINDS = ("deploy", "rollback", "unlock", "command")
TASK_COLUMNS = ("host", "play", "task", "action", "status", "changed", "started_at",
                "duration_ms", "message", "role", "task_file")
_TIMESTAMP_COLUMNS = frozenset({"started_at", "completed_at", "created_at", "updated_at"})
_SQLITE_RETRIES = 20
_TRANSIENT_RETRIES = 8


class HistoryStoreError(Exception):
    """The store cannot be reached or refused an operation; the message says which and why."""


def utcnow() -> datetime:
    """Naive UTC, the form every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_store_url() -> str:
    """The SQLite file under the user's data directory."""
    return str(_data_home() / "slipway" / "history.sqlite3")


def default_spool_dir() -> str:
    return str(_data_home() / "slipway" / "history-spool")


_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """'90d', '12h', '2w', '30m', '45s' as a timedelta."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"not an age: {text!r} (expected a number and one of s, m, h, d, w)")
    return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})


def _timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


class _Dialect:
    """What differs between the three databases: driver, DDL types, placeholders, locking."""

    name = ""
    placeholder = "?"
    id_column = ""
    big_text = "TEXT"
    timestamp = "TIMESTAMP"
    integrity_errors: tuple[type[BaseException], ...] = ()

    def concat(self, left: str, right: str) -> str:
        return f"{left} || {right}"

    def sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def param(self, value: Any) -> Any:
        return value

    @contextlib.contextmanager
    def schema_lock(self, connection: Any) -> Iterator[None]:
        """Held around the whole schema transaction, commit included."""
        yield

    def lock_schema_in_transaction(self, cursor: Any) -> None:
        """Taken inside the schema transaction, released by its commit."""

    def transient(self, exc: BaseException) -> bool:
        """True for an error that trying the same transaction again can cure (a deadlock)."""
        return False


class _SQLite(_Dialect):
    name = "sqlite"
    id_column = "id INTEGER PRIMARY KEY AUTOINCREMENT"
    timestamp = "TEXT"

    def param(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat(sep=" ", timespec="microseconds")
        return value

    def transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "locked" in str(exc) or "busy" in str(exc))


class _PostgreSQL(_Dialect):
    name = "postgresql"
    placeholder = "%s"
    id_column = "id BIGSERIAL PRIMARY KEY"

    def lock_schema_in_transaction(self, cursor: Any) -> None:
        # Two runs starting at once on an empty database must not both create the tables.
        cursor.execute("SELECT pg_advisory_xact_lock(7291554)")

    def transient(self, exc: BaseException) -> bool:
        # deadlock_detected, serialization_failure
        return getattr(exc, "pgcode", None) in ("40P01", "40001")


class _MySQL(_Dialect):
    name = "mysql"
    placeholder = "%s"
    id_column = "id BIGINT AUTO_INCREMENT PRIMARY KEY"
    big_text = "LONGTEXT"
    timestamp = "DATETIME(6)"

    def concat(self, left: str, right: str) -> str:
        return f"CONCAT({left}, {right})"

    def transient(self, exc: BaseException) -> bool:
        # ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT: InnoDB rolled the statement or all back.
        return bool(getattr(exc, "args", None)) and exc.args[0] in (1213, 1205)

    @contextlib.contextmanager
    def schema_lock(self, connection: Any) -> Iterator[None]:
        # DDL commits implicitly in MySQL, so a transaction cannot serialise schema changes:
        # a named lock, held until the version row is committed, does.
        with connection.cursor() as cursor:
            cursor.execute("SELECT GET_LOCK('slipway_deploy_history_schema', 30)")
            try:
                yield
            finally:
                cursor.execute("SELECT RELEASE_LOCK('slipway_deploy_history_schema')")
                connection.commit()


def _schema_v1(d: _Dialect) -> list[str]:
    ts = d.timestamp
    text = d.big_text
    # MySQL cannot index TEXT without a prefix length, so indexed strings are VARCHARs.
    return [
        f"""CREATE TABLE deploy_history (
            {d.id_column},
            run_uuid VARCHAR(36) NOT NULL UNIQUE,
            environment VARCHAR(100) NOT NULL,
            branch VARCHAR(255),
            commit_hash VARCHAR(64),
            status VARCHAR(20) NOT NULL DEFAULT 'running',
            deployed_by VARCHAR(100) NOT NULL,
            description TEXT,
            logs {text},
            error_message TEXT,
            started_at {ts},
            completed_at {ts},
            duration INTEGER,
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL,
            is_deleted VARCHAR(1) NOT NULL DEFAULT 'N',
            playbook TEXT,
            inventory TEXT,
            host_limit TEXT,
            tags TEXT,
            skip_tags TEXT,
            check_mode SMALLINT NOT NULL DEFAULT 0,
            release_id VARCHAR(100),
            app VARCHAR(100),
            extra_vars TEXT,
            controller VARCHAR(255),
            pid INTEGER,
            ansible_version VARCHAR(50)
        )""",
        "CREATE INDEX deploy_history_env_started ON deploy_history (environment, started_at)",
        "CREATE INDEX deploy_history_status ON deploy_history (status)",
        "CREATE INDEX deploy_history_created ON deploy_history (created_at)",
        f"""CREATE TABLE deploy_host_summary (
            {d.id_column},
            deploy_id BIGINT NOT NULL,
            host VARCHAR(255) NOT NULL,
            ok INTEGER NOT NULL DEFAULT 0,
            changed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            unreachable INTEGER NOT NULL DEFAULT 0,
            skipped INTEGER NOT NULL DEFAULT 0,
            rescued INTEGER NOT NULL DEFAULT 0,
            ignored INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX deploy_host_summary_deploy ON deploy_host_summary (deploy_id)",
        f"""CREATE TABLE deploy_task_results (
            {d.id_column},
            deploy_id BIGINT NOT NULL,
            host VARCHAR(255) NOT NULL,
            play TEXT,
            task TEXT,
            action VARCHAR(255),
            status VARCHAR(20) NOT NULL,
            changed SMALLINT NOT NULL DEFAULT 0,
            started_at {ts},
            duration_ms INTEGER,
            message TEXT
        )""",
        "CREATE INDEX deploy_task_results_deploy ON deploy_task_results (deploy_id)",
    ]


def _schema_v2(d: _Dialect) -> list[str]:
    """Runs of kind ``command`` (playbooks/manage.yml): the command line, its return code and
    output. ``kind`` stays NULL for runs recorded before (their playbook tells)."""
    return [
        "ALTER TABLE deploy_history ADD COLUMN kind VARCHAR(20)",
        "ALTER TABLE deploy_history ADD COLUMN command TEXT",
        "ALTER TABLE deploy_history ADD COLUMN command_rc INTEGER",
        f"ALTER TABLE deploy_history ADD COLUMN command_output {d.big_text}",
    ]


def _schema_v3(d: _Dialect) -> list[str]:
    """Where a task comes from: its role's name and the name of its tasks file (what the
    console's progress bar maps to the deploy's phases, see slipway.phases). NULL for tasks
    recorded before, and for tasks of a playbook outside any role."""
    return [
        "ALTER TABLE deploy_task_results ADD COLUMN role VARCHAR(255)",
        "ALTER TABLE deploy_task_results ADD COLUMN task_file VARCHAR(255)",
    ]


# Each entry upgrades the schema by one version; append, never edit a released entry.
_MIGRATIONS: list[Callable[[_Dialect], list[str]]] = [_schema_v1, _schema_v2, _schema_v3]


def _connect_postgresql(url: str, connect_timeout: int) -> Any:
    try:
        import psycopg2
    except ImportError as exc:
        raise HistoryStoreError("a postgresql:// history store needs psycopg2 "
                                "(pip install psycopg2-binary)") from exc
    try:
        return psycopg2.connect(url, connect_timeout=connect_timeout)
    except psycopg2.Error as exc:
        raise HistoryStoreError(f"cannot connect to the PostgreSQL history store: {exc}") from exc


def _connect_mysql(url: str, connect_timeout: int) -> Any:
    try:
        import pymysql
    except ImportError as exc:
        raise HistoryStoreError("a mysql:// history store needs PyMySQL (pip install PyMySQL)") \
            from exc
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    kwargs: dict[str, Any] = {
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")),
        "charset": "utf8mb4",
        "connect_timeout": connect_timeout,
        "autocommit": False,
        # Without gap locks, runs writing their own rows at once do not deadlock each other.
        "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    }
    if "unix_socket" in query:
        kwargs["unix_socket"] = query["unix_socket"][0]
    else:
        kwargs["host"] = parts.hostname or "localhost"
        kwargs["port"] = parts.port or 3306
    try:
        return pymysql.connect(**kwargs)
    except pymysql.Error as exc:
        raise HistoryStoreError(f"cannot connect to the MySQL history store: {exc}") from exc


def _while_sqlite_busy(operation: Callable[[], Any]) -> Any:
    """operation(), tried again (bounded, with a growing pause) while SQLite answers that the
    database is locked or busy; any other error, or the last one, is raised."""
    attempt = 0
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            attempt += 1
            if not ("locked" in str(exc) or "busy" in str(exc)) or attempt >= _SQLITE_RETRIES:
                raise
            time.sleep(min(0.05 * attempt, 0.5))


def _private_sqlite_files(path: str) -> None:
    """The store's file exists and is 0600 before SQLite opens it; SQLite gives its -wal and
    -shm files the mode of the database file, and older ones are tightened here.

    Nothing here opens these files: closing any descriptor of a file drops every POSIX lock
    this process holds on it, and SQLite's connections in other threads rely on theirs.
    """
    try:
        os.mknod(path, 0o600 | stat.S_IFREG)
    except FileExistsError:
        pass
    except OSError:  # some systems (macOS) let only root make a file this way
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            status = os.stat(name)
            # Exactly 0600: the umask may have taken more than the others' bits.
            if stat.S_IMODE(status.st_mode) != 0o600 and status.st_uid == os.geteuid():
                os.chmod(name, 0o600)


def _connect_sqlite(path: str, connect_timeout: int) -> Any:
    """Open the SQLite file in WAL mode.

    Switching a new file to WAL needs an exclusive lock, and SQLite may answer "database is
    locked" at once, without waiting out the busy timeout, while another process does the same
    switch or creates the schema; so the open is tried again for a bounded while.
    """
    def open_in_wal_mode() -> Any:
        connection = sqlite3.connect(path, timeout=30,
                                     isolation_level=None, check_same_thread=False)
        try:
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    try:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path != ":memory:":
            _private_sqlite_files(path)
        return _while_sqlite_busy(open_in_wal_mode)
    except (OSError, sqlite3.Error) as exc:
        raise HistoryStoreError(f"cannot open the SQLite history store {path}: {exc}") from exc


def _driver_errors(dialect: _Dialect) -> tuple[type[BaseException], ...]:
    if dialect.name == "postgresql":
        import psycopg2
        return (psycopg2.Error,)
    if dialect.name == "mysql":
        import pymysql
        return (pymysql.Error,)
    return (sqlite3.Error,)


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
    return parts._replace(netloc=netloc).geturl()


# Secrets: what the callback and the console mask in every text bound for the store.

MASK = "********"
# Shorter values would mask ordinary words and numbers all over the log.
MIN_SECRET_LENGTH = 4
# The user-info of a URL: "://user:password@" or "://token@". The password may hold "@" (the
# last one before a blank or a quote ends it); bounded, so that a long line stays linear.
_URL_USERINFO = r"://[^\s/?#@:'\"<>]*(?::[^\s'\"<>]{0,1024})?@"
_PRIVATE_KEY = (r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
                r"(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)")
# "password: x", "DB_PASSWORD=x", '"api_token": "x"': the value after a secret-looking name
# (a template, "{{ ... }}", is left alone: it is source, not a value).
_NAMED_VALUE = (r"[\w-]*[\"']?[ \t]*[:=](?!=)[ \t]*"
                r"(?:\"(?!\{\{)(?:[^\"\\\n]|\\.)*\"|'(?!\{\{)[^'\n]*'|[^\s\"',;&}\]=][^\s\"',;&}\]]*)")
_SECRET_WORDS = ("pass(?:word|wd|phrase)", "secret", "token", "private_key", "api_key",
                 "credential")
# Every branch starts with a literal character, so that the regex engine skips ahead to the
# few places where one can match: this pattern runs on every line of every log.
_SHAPES = "|".join([
    _URL_USERINFO,
    _PRIVATE_KEY,
    *(f"{first}(?i:{word[1:]}){_NAMED_VALUE}"
      for word in _SECRET_WORDS for first in sorted({word[0], word[0].upper()})),
])
_NAME_SEPARATOR = re.compile(r"[\"']?[ \t]*[:=][ \t]*")
_URL_PASSWORD = re.compile(r"://[^\s/?#@:'\"<>]*:([^\s'\"<>]{0,1024})@")


def url_passwords(text: str) -> set[str]:
    """The passwords of the URLs in ``text``, as written and percent-decoded."""
    if "://" not in text:
        return set()
    found = set()
    for match in _URL_PASSWORD.finditer(text):
        found |= {match.group(1), unquote(match.group(1))}
    return found


def _mask_shape(text: str) -> str:
    """What a match of _SHAPES becomes: the secret part of it masked, the rest kept."""
    if text.startswith("://"):
        user, colon = text[3:-1].partition(":")[:2]
        if colon:
            return f"://{user}:{MASK}@"
        return f"://{MASK}@" if user else text
    if text.startswith("-----BEGIN"):
        return MASK
    separator = _NAME_SEPARATOR.search(text)
    name, value = text[:separator.end()], text[separator.end():]
    quote = value[:1] if value[:1] in ("'", '"') else ""
    return f"{name}{quote}{MASK}{quote}"


class SecretScrubber:
    """Masks secrets in text: the values it was given, and what has the shape of a secret
    whatever its name (a URL's user-info, a private key, the value after a secret-looking name).

    ``add`` may run in one thread while ``scrub`` runs in another: the pattern is swapped whole.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: frozenset[str] = frozenset()
        self._compiled = (re.compile(_SHAPES), self._values)
        self._lock = threading.Lock()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            new = {str(value) for value in values
                   if value and len(value) >= MIN_SECRET_LENGTH} - self._values
            if not new:
                return
            self._values |= new
            # Longest first, so that a secret containing another one is masked whole.
            ordered = sorted(self._values, key=len, reverse=True)
            pattern = re.compile("|".join([*(re.escape(value) for value in ordered), _SHAPES]))
            self._compiled = (pattern, self._values)

    def scrub(self, text: str) -> str:
        if not text:
            return text
        pattern, values = self._compiled
        return pattern.sub(lambda match: MASK if match.group(0) in values
                           else _mask_shape(match.group(0)), text)

    def scrub_all(self, data: Any) -> Any:
        """``data`` (strings, dicts and lists of them) with every string scrubbed."""
        if isinstance(data, str):
            return self.scrub(data)
        if isinstance(data, dict):
            return {key: self.scrub_all(value) for key, value in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.scrub_all(value) for value in data]
        return data


class HistoryStore:
    """A connection to the deploy history, with the schema brought up to date on first use.

    Not thread-safe: give each thread its own store. Every method either succeeds or raises
    HistoryStoreError; a failed call leaves the store usable (it reconnects on the next call).
    """

    def __init__(self, url: str | None = None, connect_timeout: int = 5) -> None:
        self.url = url or default_store_url()
        self.connect_timeout = connect_timeout
        scheme = urlsplit(self.url).scheme.lower()
        if scheme in ("postgresql", "postgres"):
            self.dialect: _Dialect = _PostgreSQL()
        elif scheme in ("mysql", "mariadb", "mysql+pymysql"):
            self.dialect = _MySQL()
        elif scheme in ("", "sqlite", "file") or len(scheme) == 1:  # one letter: a drive
            self.dialect = _SQLite()
        else:
            raise HistoryStoreError(f"unsupported history store URL scheme {scheme!r}: use a "
                                    "file path, postgresql://... or mysql://...")
        self._connection: Any = None
        self._schema_ready = False

    @property
    def key(self) -> str:
        """A short stable name for this store, used to keep spool files apart."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def _sqlite_path(self) -> str:
        parts = urlsplit(self.url)
        if parts.scheme in ("sqlite", "file"):
            return unquote(parts.path)
        return os.path.expanduser(self.url)

    def _connect(self) -> Any:
        if self._connection is None:
            if self.dialect.name == "postgresql":
                self._connection = _connect_postgresql(self.url, self.connect_timeout)
            elif self.dialect.name == "mysql":
                self._connection = _connect_mysql(self.url, self.connect_timeout)
            else:
                self._connection = _connect_sqlite(self._sqlite_path(), self.connect_timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _begin(self, write: bool) -> Any:
        """A cursor in a new transaction; SQLite retries while another writer holds the lock."""
        def begin() -> Any:
            cursor = self._connect().cursor()
            if self.dialect.name == "sqlite":
                # A writer takes the lock up front, so it never has to upgrade (and fail).
                cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            return cursor

        try:
            return _while_sqlite_busy(begin)
        except (sqlite3.OperationalError, *self._errors()) as exc:
            self.close()
            raise HistoryStoreError(f"history store error: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Any]:
        cursor = self._begin(write)
        try:
            yield cursor
            self._connection.commit()
        except self._errors() as exc:
            self._rollback()
            self.close()
            raise HistoryStoreError(f"history store error: {exc}") from exc
        except BaseException:
            self._rollback()
            raise

    def _errors(self) -> tuple[type[BaseException], ...]:
        try:
            return _driver_errors(self.dialect)
        except ImportError:
            return ()

    def _rollback(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.rollback()

    def _execute(self, cursor: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        cursor.execute(self.dialect.sql(statement), [self.dialect.param(p) for p in params])
        return cursor

    def _rows(self, cursor: Any) -> list[dict[str, Any]]:
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            for name in _TIMESTAMP_COLUMNS.intersection(row):
                row[name] = _timestamp(row[name])
            rows.append(row)
        return rows

    # Schema

    def ensure_schema(self) -> None:
        """Create the tables, or upgrade them to SCHEMA_VERSION; safe to call concurrently."""
        if self._schema_ready:
            return
        try:
            schema_lock = self.dialect.schema_lock(self._connect())
            with schema_lock, self._transaction() as cursor:
                self.dialect.lock_schema_in_transaction(cursor)
                self._upgrade(cursor)
        except self._errors() as exc:
            self.close()
            raise HistoryStoreError(f"history store error: {exc}") from exc
        self._schema_ready = True

    def _upgrade(self, cursor: Any) -> None:
        version = self._schema_version(cursor)
        if version > SCHEMA_VERSION:
            raise HistoryStoreError(f"the history store has schema version {version}, newer "
                                    f"than this code ({SCHEMA_VERSION}): upgrade slipway")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[number - 1](self.dialect):
                self._execute(cursor, statement)
            self._execute(cursor, "INSERT INTO deploy_history_schema_version "
                          "(version, applied_at) VALUES (?, ?)", (number, utcnow()))

    def _schema_version(self, cursor: Any) -> int:
        self._execute(cursor, "CREATE TABLE IF NOT EXISTS deploy_history_schema_version ("
                      f"version INTEGER NOT NULL, applied_at {self.dialect.timestamp} NOT NULL)")
        self._execute(cursor, "SELECT MAX(version) FROM deploy_history_schema_version")
        return cursor.fetchone()[0] or 0

    def schema_version(self) -> int:
        with self._transaction() as cursor:
            return self._schema_version(cursor)

    # Writing (used by the callback's writer thread and by spool replay)

    def apply(self, run_uuid: str, operations: Iterable[Sequence[Any]]) -> int:
        """Apply a batch of writer operations to one run, in one transaction; returns its id.

        Operations are ``(kind, payload)`` pairs: ``start`` (run columns; ignored if the run
        exists), ``update`` (run columns), ``log`` (text to append), ``tasks`` (a list of task
        result dicts), ``hosts`` (host -> counters) and ``finish`` (run columns; a run already
        marked ``cancelled`` keeps that status).
        """
        self.ensure_schema()
        operations = list(operations)
        return self._retrying(lambda: self._apply(run_uuid, operations))

    def _retrying(self, write: Callable[[], Any]) -> Any:
        """write(), a whole transaction, tried again (bounded) after a deadlock: the database
        rolled it back entirely, so running it again is safe."""
        for attempt in range(1, _TRANSIENT_RETRIES + 1):
            try:
                return write()
            except HistoryStoreError as exc:
                if attempt == _TRANSIENT_RETRIES or exc.__cause__ is None \
                        or not self.dialect.transient(exc.__cause__):
                    raise
                time.sleep(0.05 * attempt + random.random() * 0.1)  # noqa: S311
        raise AssertionError("unreachable")

    def _apply(self, run_uuid: str, operations: list[Sequence[Any]]) -> int:
        with self._transaction() as cursor:
            deploy_id = self._run_id(cursor, run_uuid)
            for kind, payload in operations:
                if kind == "start":
                    if deploy_id is None:
                        deploy_id = self._insert_run(cursor, run_uuid, payload)
                    else:
                        # Someone (the console) created the row first: add what it left empty.
                        self._fill_run(cursor, deploy_id, payload)
                    continue
                if deploy_id is None:
                    # The start of this run was lost; keep what follows rather than drop it.
                    deploy_id = self._insert_run(cursor, run_uuid, {})
                if kind == "update":
                    self._update_run(cursor, deploy_id, payload)
                elif kind == "log":
                    self._append_log(cursor, deploy_id, payload)
                elif kind == "tasks":
                    self._insert_tasks(cursor, deploy_id, payload)
                elif kind == "hosts":
                    self._replace_hosts(cursor, deploy_id, payload)
                elif kind == "finish":
                    self._finish_run(cursor, deploy_id, payload)
                else:
                    raise HistoryStoreError(f"unknown history operation {kind!r}")
            if deploy_id is None:
                raise HistoryStoreError(f"no run {run_uuid} and no start operation for it")
            return deploy_id

    def _run_id(self, cursor: Any, run_uuid: str) -> int | None:
        self._execute(cursor, "SELECT id FROM deploy_history WHERE run_uuid = ?", (run_uuid,))
        row = cursor.fetchone()
        return row[0] if row else None

    @staticmethod
    def _columns(fields: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(fields) - RUN_COLUMNS
        if unknown:
            raise HistoryStoreError(f"unknown deploy_history columns: {sorted(unknown)}")
        return {name: _timestamp(value) if name in _TIMESTAMP_COLUMNS else value
                for name, value in fields.items()}

    def _insert_run(self, cursor: Any, run_uuid: str, fields: Mapping[str, Any]) -> int:
        now = utcnow()
        columns = {"environment": "unknown", "deployed_by": "unknown", "status": "running",
                   "started_at": now, **self._columns(fields),
                   "run_uuid": run_uuid, "created_at": now, "updated_at": now}
        names = ", ".join(columns)
        marks = ", ".join(["?"] * len(columns))
        self._execute(cursor, f"INSERT INTO deploy_history ({names}) VALUES ({marks})",
                      list(columns.values()))
        if self.dialect.name == "postgresql":
            return self._run_id(cursor, run_uuid)
        return cursor.lastrowid

    def _fill_run(self, cursor: Any, deploy_id: int, fields: Mapping[str, Any]) -> None:
        columns = {name: value for name, value in self._columns(fields).items()
                   if value is not None}
        if not columns:
            return
        assignments = ", ".join(f"{name} = COALESCE({name}, ?)" for name in columns)
        self._execute(cursor, f"UPDATE deploy_history SET {assignments} WHERE id = ?",
                      [*columns.values(), deploy_id])

    def _update_run(self, cursor: Any, deploy_id: int, fields: Mapping[str, Any]) -> None:
        columns = {**self._columns(fields), "updated_at": utcnow()}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self._execute(cursor, f"UPDATE deploy_history SET {assignments} WHERE id = ?",
                      [*columns.values(), deploy_id])

    def _finish_run(self, cursor: Any, deploy_id: int, fields: Mapping[str, Any]) -> None:
        columns = self._columns(fields)
        status = columns.pop("status", "success")
        columns["updated_at"] = utcnow()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        self._execute(cursor, "UPDATE deploy_history SET status = CASE WHEN status = 'cancelled' "
                      f"THEN status ELSE ? END, {assignments} WHERE id = ?",
                      [status, *columns.values(), deploy_id])

    def _append_log(self, cursor: Any, deploy_id: int, text: str) -> None:
        logs = self.dialect.concat("COALESCE(logs, '')", "?")
        self._execute(cursor, f"UPDATE deploy_history SET logs = {logs}, updated_at = ? "
                      "WHERE id = ?", (text, utcnow(), deploy_id))

    def _insert_tasks(self, cursor: Any, deploy_id: int,
                      tasks: Sequence[Mapping[str, Any]]) -> None:
        if not tasks:
            return
        names = ", ".join(("deploy_id", *TASK_COLUMNS))
        marks = ", ".join(["?"] * (len(TASK_COLUMNS) + 1))
        param = self.dialect.param
        rows = [[deploy_id, *(param(_timestamp(task.get(name)) if name == "started_at"
                                    else task.get(name)) for name in TASK_COLUMNS)]
                for task in tasks]
        cursor.executemany(self.dialect.sql(f"INSERT INTO deploy_task_results ({names}) "
                                            f"VALUES ({marks})"), rows)

    def _replace_hosts(self, cursor: Any, deploy_id: int,
                       hosts: Mapping[str, Mapping[str, int]]) -> None:
        self._execute(cursor, "DELETE FROM deploy_host_summary WHERE deploy_id = ?", (deploy_id,))
        names = ", ".join(("deploy_id", "host", *HOST_COUNTERS))
        marks = ", ".join(["?"] * (len(HOST_COUNTERS) + 2))
        rows = [[deploy_id, host, *(int(counts.get(name, 0)) for name in HOST_COUNTERS)]
                for host, counts in sorted(hosts.items())]
        if rows:
            cursor.executemany(self.dialect.sql(f"INSERT INTO deploy_host_summary ({names}) "
                                                f"VALUES ({marks})"), rows)

    def mark_stale_runs(self, controller: str, is_alive: Callable[[int], bool],
                        own_pid: int | None = None) -> list[int]:
        """Mark ``interrupted`` the running runs of this controller whose process is gone."""
        self.ensure_schema()
        return self._retrying(lambda: self._mark_stale_runs(controller, is_alive, own_pid))

    def _mark_stale_runs(self, controller: str, is_alive: Callable[[int], bool],
                         own_pid: int | None) -> list[int]:
        with self._transaction() as cursor:
            self._execute(cursor, "SELECT id, pid, started_at, updated_at FROM deploy_history "
                          "WHERE status = 'running' AND controller = ?", (controller,))
            stale = [(row[0], _timestamp(row[2]), _timestamp(row[3])) for row in cursor.fetchall()
                     if row[1] and row[1] != own_pid and not is_alive(row[1])]
            for deploy_id, started, last_seen in stale:
                duration = int((last_seen - started).total_seconds()) if started else None
                self._execute(cursor, "UPDATE deploy_history SET status = 'interrupted', "
                              "completed_at = ?, duration = ?, "
                              "error_message = COALESCE(error_message, ?), "
                              "updated_at = ? WHERE id = ? AND status = 'running'",
                              (last_seen, duration, "the ansible-playbook process ended without "
                               "finishing the run (killed)", utcnow(), deploy_id))
        return [entry[0] for entry in stale]

    def mark_cancelled(self, deploy_id: int, reason: str | None = None) -> bool:
        """Mark a running run ``cancelled`` (the console does this before stopping it)."""
        self.ensure_schema()
        now = utcnow()
        with self._transaction() as cursor:
            self._execute(cursor, "UPDATE deploy_history SET status = 'cancelled', "
                          "error_message = COALESCE(?, error_message), completed_at = ?, "
                          "updated_at = ? WHERE id = ? AND status = 'running'",
                          (reason, now, now, deploy_id))
            return cursor.rowcount == 1

    def prune(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Soft-delete finished runs created before ``now - older_than`` and clear their logs."""
        self.ensure_schema()
        cutoff = (now or utcnow()) - older_than
        with self._transaction() as cursor:
            self._execute(cursor, "UPDATE deploy_history SET is_deleted = 'Y', logs = NULL, "
                          "updated_at = ? WHERE created_at < ? AND is_deleted = 'N' "
                          "AND status <> 'running'", (utcnow(), cutoff))
            return cursor.rowcount

    # Reading

    def _filters(self, environment: str | None, status: str | None, since: datetime | None,
                 include_deleted: bool, kind: str | None = None) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if not include_deleted:
            clauses.append("is_deleted = 'N'")
        if environment:
            clauses.append("environment = ?")
            params.append(environment)
        if status:
            clauses.append("status = ?")
            params.append(status)
        if since:
            clauses.append("started_at >= ?")
            params.append(since)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_runs(self, environment: str | None = None, status: str | None = None,
                  since: datetime | None = None, limit: int = 20, offset: int = 0,
                  include_deleted: bool = False, kind: str | None = None) -> list[dict[str, Any]]:
        """Runs, newest first, without their logs and command outputs."""
        self.ensure_schema()
        where, params = self._filters(environment, status, since, include_deleted, kind)
        columns = ", ".join(("id", "run_uuid", *sorted(RUN_COLUMNS - {"command_output"}),
                             "created_at", "updated_at", "is_deleted"))
        with self._transaction(write=False) as cursor:
            self._execute(cursor, f"SELECT {columns} FROM deploy_history{where} "
                          "ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
                          [*params, int(limit), int(offset)])
            return self._rows(cursor)

    def count_runs(self, environment: str | None = None, status: str | None = None,
                   since: datetime | None = None, include_deleted: bool = False,
                   kind: str | None = None) -> int:
        self.ensure_schema()
        where, params = self._filters(environment, status, since, include_deleted, kind)
        with self._transaction(write=False) as cursor:
            self._execute(cursor, f"SELECT COUNT(*) FROM deploy_history{where}", params)
            return cursor.fetchone()[0]

    def get_run(self, deploy_id: int) -> dict[str, Any] | None:
        """One run with every column, logs included."""
        self.ensure_schema()
        with self._transaction(write=False) as cursor:
            self._execute(cursor, "SELECT * FROM deploy_history WHERE id = ?", (deploy_id,))
            rows = self._rows(cursor)
        return rows[0] if rows else None

    def find_run(self, run_uuid: str) -> dict[str, Any] | None:
        """The run a writer started with this run_uuid (the console sets it before a run)."""
        self.ensure_schema()
        with self._transaction(write=False) as cursor:
            self._execute(cursor, "SELECT * FROM deploy_history WHERE run_uuid = ?", (run_uuid,))
            rows = self._rows(cursor)
        return rows[0] if rows else None

    def host_summaries(self, deploy_id: int) -> list[dict[str, Any]]:
        self.ensure_schema()
        with self._transaction(write=False) as cursor:
            self._execute(cursor, f"SELECT host, {', '.join(HOST_COUNTERS)} FROM "
                          "deploy_host_summary WHERE deploy_id = ? ORDER BY host", (deploy_id,))
            return self._rows(cursor)

    def task_results(self, deploy_id: int) -> list[dict[str, Any]]:
        self.ensure_schema()
        with self._transaction(write=False) as cursor:
            self._execute(cursor, f"SELECT id, {', '.join(TASK_COLUMNS)} FROM deploy_task_results "
                          "WHERE deploy_id = ? ORDER BY id", (deploy_id,))
            return self._rows(cursor)

    def read_log(self, deploy_id: int, offset: int = 0) -> tuple[str, int, str | None]:
        """The log text from character ``offset`` on, the offset to ask for next, and the status.

        Follow a running deploy by calling again with the returned offset until the status is no
        longer ``running``.
        """
        self.ensure_schema()
        with self._transaction(write=False) as cursor:
            self._execute(cursor, "SELECT SUBSTR(COALESCE(logs, ''), ?), status FROM "
                          "deploy_history WHERE id = ?", (int(offset) + 1, deploy_id))
            row = cursor.fetchone()
        if row is None:
            return "", offset, None
        return row[0], offset + len(row[0]), row[1]

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every history table (for audits and tests)."""
        self.ensure_schema()
        tables = ("deploy_history", "deploy_host_summary", "deploy_task_results",
                  "deploy_history_schema_version")
        result = {}
        with self._transaction(write=False) as cursor:
            for table in tables:
                self._execute(cursor, f"SELECT * FROM {table}")
                result[table] = self._rows(cursor)
        return result


def open_store(url: str | None = None, connect_timeout: int = 5) -> HistoryStore:
    """A store for ``url`` (default: the SQLite file under the user's data directory)."""
    return HistoryStore(url, connect_timeout=connect_timeout)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _open_private(path: str | Path, flags: int) -> int:
    """``os.open(path, flags)`` for a file that only its owner may read: created 0600 (never
    readable by others, not even for a moment), and made 0600 if it is ours and was not."""
    fd = os.open(path, flags, 0o600)
    try:
        status = os.fstat(fd)
        if status.st_mode & 0o077 and status.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class Spool:
    """Batches that could not reach a store, kept as JSON lines until a later run replays them.

    One file per run under ``<directory>/<store key>/``; the writing process holds an exclusive
    lock on it, so a replay never takes the file of a run that is still spooling.
    """

    def __init__(self, directory: str, store_key: str) -> None:
        self.directory = Path(directory) / store_key
        self._files: dict[str, Any] = {}

    def append(self, run_uuid: str, operations: Sequence[Sequence[Any]]) -> None:
        handle = self._files.get(run_uuid)
        if handle is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = _open_private(self.directory / f"{run_uuid}.jsonl",
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            handle = os.fdopen(fd, "a", encoding="utf-8")  # held for the whole run
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._files[run_uuid] = handle
        handle.write(json.dumps({"run_uuid": run_uuid, "ops": [list(op) for op in operations]},
                                default=_json_default) + "\n")
        handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._files.clear()

    def pending(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.jsonl"), key=lambda path: path.stat().st_mtime)

    def replay(self, store: HistoryStore) -> list[str]:
        """Write every finished spool file into ``store`` and delete it; returns the run uuids.

        If the store fails, the file stays for the next attempt. A file the store refuses while
        it otherwise works is renamed ``*.rejected`` so that it cannot block every later run.
        """
        replayed = []
        for path in self.pending():
            try:
                handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # still being written by a live run
                if os.fstat(handle.fileno()).st_nlink == 0:
                    continue  # another process replayed it while we waited
                run_uuid = path.stem
                operations = [op for batch in _batches(handle) for op in batch]
                if not operations:
                    continue
                try:
                    store.apply(run_uuid, operations)
                except HistoryStoreError:
                    store.schema_version()  # raises if the store itself is the problem
                    path.rename(path.with_suffix(".rejected"))
                    continue
                path.unlink()
                replayed.append(run_uuid)
        return replayed


def _batches(lines: Iterable[str]) -> Iterator[list[Any]]:
    """The operations of each spooled batch; a line cut short by a killed process is skipped."""
    for line in lines:
        try:
            yield json.loads(line)["ops"]
        except (ValueError, KeyError, TypeError):
            continue
