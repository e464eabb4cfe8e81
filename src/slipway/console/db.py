"""The console's own database: users, API tokens, sessions, approvals, the audit table and the
runs this console started. One SQLite file (the `console_db` of the configuration), apart from
the deploy history, which stays the callback's."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from slipway.history.store import utcnow

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
        environments TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_digest TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        last_used_at TEXT,
        expires_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        session_digest TEXT NOT NULL UNIQUE,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        environment TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('deploy', 'rollback', 'command')),
        params TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled')),
        decided_by TEXT,
        decided_at TEXT,
        run_id INTEGER
    )""",
    """CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        environment TEXT,
        run_id INTEGER,
        remote_addr TEXT,
        detail TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
    """CREATE TABLE IF NOT EXISTS launches (
        run_uuid TEXT PRIMARY KEY,
        run_id INTEGER,
        environment TEXT NOT NULL,
        kind TEXT NOT NULL,
        console_pid INTEGER NOT NULL,
        pid INTEGER,
        state TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'finished')),
        started_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    # Webhook deliveries seen: a key per delivery id and one per body, so a replay is ignored.
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        key TEXT PRIMARY KEY,
        environment TEXT NOT NULL,
        provider TEXT NOT NULL,
        delivery_id TEXT,
        received_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS schedule_state (
        key TEXT PRIMARY KEY,
        last_at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        run_id INTEGER,
        approval_id INTEGER,
        reason TEXT
    )""",
)


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    environments: tuple[str, ...]

    def can_deploy(self, environment: str) -> bool:
        return self.role == "admin" or (self.role == "deployer"
                                        and environment in self.environments)

    def can_read_logs(self, environment: str) -> bool:
        """The app's logs: admins and viewers (read-only everywhere), deployers of it."""
        return self.role in ("admin", "viewer") or environment in self.environments

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class DuplicateUser(Exception):
    pass


def _iso(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# The console's own actors: a webhook's and a schedule's runs are requested by
# ``webhook:ENV`` and ``schedule:ENV``; no account can take such a name (':' is not allowed).
SYSTEM_ACTORS = ("webhook", "schedule")


def system_user(actor: str, environment: str) -> User:
    """The named system user a webhook or a schedule runs as: it may deploy its environment
    and nothing else, and it is never an admin (so any admin may approve what it asks)."""
    if actor not in SYSTEM_ACTORS:
        raise ValueError(actor)
    return User(id=0, name=f"{actor}:{environment}", role="deployer",
                environments=(environment,))


def _user(row: sqlite3.Row) -> User:
    return User(id=row["id"], name=row["name"], role=row["role"],
                environments=tuple(json.loads(row["environments"])))


def _upgrade(connection: sqlite3.Connection) -> None:
    """Bring a database made by an earlier console up to SCHEMA (each step checks first)."""
    columns = {row["name"] for row in connection.execute("PRAGMA table_info(tokens)")}
    if "expires_at" not in columns:
        connection.execute("ALTER TABLE tokens ADD COLUMN expires_at TEXT")
    approvals_sql = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'approvals'").fetchone()[0]
    if "'cancelled'" not in approvals_sql or "'command'" not in approvals_sql:
        # SQLite cannot change a CHECK constraint: copy the rows into a table made anew.
        connection.execute("ALTER TABLE approvals RENAME TO approvals_before_cancel")
        connection.execute(next(statement for statement in SCHEMA
                                if "TABLE IF NOT EXISTS approvals" in statement))
        connection.execute("INSERT INTO approvals SELECT * FROM approvals_before_cancel")
        connection.execute("DROP TABLE approvals_before_cancel")


class ConsoleDB:
    """Every call opens its own short connection, so any thread may use one instance."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not self.path.exists()
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        with self._transaction() as connection:
            for statement in SCHEMA:
                connection.execute(statement)
            _upgrade(connection)
        if fresh:
            os.chmod(self.path, 0o600)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=30000")
        try:
            yield connection
        finally:
            connection.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    # Users and credentials

    def add_user(self, name: str, password_hash: str, role: str,
                 environments: list[str]) -> User:
        try:
            with self._transaction() as connection:
                cursor = connection.execute(
                    "INSERT INTO users (name, password_hash, role, environments, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, password_hash, role, json.dumps(sorted(set(environments))),
                     _iso(utcnow())))
                return User(cursor.lastrowid, name, role, tuple(sorted(set(environments))))
        except sqlite3.IntegrityError:
            raise DuplicateUser(f"a user named {name!r} exists already") from None

    def user(self, name: str) -> User | None:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def password_hash(self, name: str) -> tuple[User | None, str | None]:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return (_user(row), row["password_hash"]) if row else (None, None)

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                               (password_hash, user_id))

    def users(self) -> list[User]:
        with self._connect() as connection:
            return [_user(row) for row in connection.execute("SELECT * FROM users ORDER BY name")]

    def count_users(self) -> int:
        with self._connect() as connection:
            return connection.execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def delete_user(self, name: str, deleted_by: str) -> list[int] | None:
        """Delete the user (its tokens and sessions go with it) and cancel its pending approval
        requests, in one transaction; the ids of those requests, or None if there is no user."""
        with self._transaction() as connection:
            if connection.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount != 1:
                return None
            pending = [row["id"] for row in connection.execute(
                "SELECT id FROM approvals WHERE requested_by = ? AND state = 'pending' "
                "ORDER BY id", (name,))]
            connection.execute("UPDATE approvals SET state = 'cancelled', decided_by = ?, "
                               "decided_at = ? WHERE requested_by = ? AND state = 'pending'",
                               (deleted_by, _iso(utcnow()), name))
            return pending

    def set_password(self, user_id: int, password_hash: str,
                     keep_session: str | None = None) -> int:
        """A new password hash; every session of the user but ``keep_session`` ends. Returns
        how many sessions ended."""
        with self._transaction() as connection:
            connection.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                               (password_hash, user_id))
            return connection.execute(
                "DELETE FROM sessions WHERE user_id = ? AND session_digest IS NOT ?",
                (user_id, keep_session)).rowcount

    # API tokens

    def add_token(self, user_id: int, digest: str, expires_at: datetime | None = None) -> int:
        with self._transaction() as connection:
            return connection.execute(
                "INSERT INTO tokens (user_id, token_digest, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (user_id, digest, _iso(utcnow()),
                 _iso(expires_at) if expires_at else None)).lastrowid

    def tokens(self, user_id: int) -> list[dict[str, Any]]:
        """A user's tokens, oldest first: never their digests."""
        now = utcnow()
        with self._connect() as connection:
            rows = connection.execute("SELECT id, created_at, last_used_at, expires_at "
                                      "FROM tokens WHERE user_id = ? ORDER BY id", (user_id,))
            tokens = [{key: _datetime(value) if key.endswith("_at") else value
                       for key, value in dict(row).items()} for row in rows]
        for token in tokens:
            token["expired"] = token["expires_at"] is not None and token["expires_at"] <= now
        return tokens

    def token_owner(self, token_id: int) -> str | None:
        with self._connect() as connection:
            row = connection.execute("SELECT users.name FROM tokens JOIN users ON users.id = "
                                     "tokens.user_id WHERE tokens.id = ?",
                                     (token_id,)).fetchone()
        return row["name"] if row else None

    def delete_token(self, token_id: int) -> bool:
        with self._transaction() as connection:
            return connection.execute("DELETE FROM tokens WHERE id = ?",
                                      (token_id,)).rowcount == 1

    def user_for_token(self, digest: str) -> User | None:
        """The user of a token that exists and has not expired."""
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT users.* FROM tokens JOIN users ON users.id = tokens.user_id "
                "WHERE token_digest = ? AND (expires_at IS NULL OR expires_at > ?)",
                (digest, _iso(utcnow()))).fetchone()
            if row is None:
                return None
            connection.execute("UPDATE tokens SET last_used_at = ? WHERE token_digest = ?",
                               (_iso(utcnow()), digest))
        return _user(row)

    def add_session(self, user_id: int, digest: str, csrf_token: str, hours: float) -> None:
        now = utcnow()
        with self._transaction() as connection:
            connection.execute("DELETE FROM sessions WHERE expires_at < ?", (_iso(now),))
            connection.execute("INSERT INTO sessions (user_id, session_digest, csrf_token, "
                               "created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                               (user_id, digest, csrf_token, _iso(now),
                                _iso(now + timedelta(hours=hours))))

    def session(self, digest: str) -> tuple[User, str] | None:
        """The user and CSRF token of a session that has not expired."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT users.*, sessions.csrf_token FROM sessions JOIN users ON users.id = "
                "sessions.user_id WHERE session_digest = ? AND expires_at > ?",
                (digest, _iso(utcnow()))).fetchone()
        return (_user(row), row["csrf_token"]) if row else None

    def delete_session(self, digest: str) -> None:
        with self._transaction() as connection:
            connection.execute("DELETE FROM sessions WHERE session_digest = ?", (digest,))

    # Approvals

    def add_approval(self, environment: str, kind: str, params: dict[str, Any],
                     requested_by: str) -> int:
        with self._transaction() as connection:
            return connection.execute(
                "INSERT INTO approvals (environment, kind, params, requested_by, requested_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (environment, kind, json.dumps(params, sort_keys=True), requested_by,
                 _iso(utcnow()))).lastrowid

    def approval(self, approval_id: int) -> dict[str, Any] | None:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM approvals WHERE id = ?",
                                     (approval_id,)).fetchone()
        return self._approval(row) if row else None

    @staticmethod
    def _approval(row: sqlite3.Row) -> dict[str, Any]:
        approval = dict(row)
        approval["params"] = json.loads(approval["params"])
        return approval

    def approvals(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query, params = "SELECT * FROM approvals", []
        if state:
            query += " WHERE state = ?"
            params.append(state)
        with self._connect() as connection:
            rows = connection.execute(query + " ORDER BY id DESC LIMIT ?", [*params, limit])
            return [self._approval(row) for row in rows]

    def approve(self, approval_id: int, decided_by: str) -> tuple[str | None, User | None]:
        """Approve a pending request if its requester still exists and may still run it there,
        checked in the same transaction (a deletion cannot slip in between); cancel it if not.
        Returns the state this call gave it (None: it was not pending) and the requester."""
        with self._transaction() as connection:
            request = connection.execute("SELECT * FROM approvals WHERE id = ? AND state = "
                                         "'pending'", (approval_id,)).fetchone()
            if request is None:
                return None, None
            row = connection.execute("SELECT * FROM users WHERE name = ?",
                                     (request["requested_by"],)).fetchone()
            requester = _user(row) if row else None
            if request["requested_by"] in (f"{actor}:{request['environment']}"
                                           for actor in SYSTEM_ACTORS):
                requester = system_user(request["requested_by"].partition(":")[0],
                                        request["environment"])
            state = ("approved" if requester and requester.can_deploy(request["environment"])
                     else "cancelled")
            connection.execute("UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? "
                               "WHERE id = ?", (state, decided_by, _iso(utcnow()), approval_id))
            return state, requester

    def decide_approval(self, approval_id: int, state: str, decided_by: str) -> bool:
        """Record the decision once; False if the request was decided already."""
        with self._transaction() as connection:
            return connection.execute(
                "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? "
                "WHERE id = ? AND state = 'pending'",
                (state, decided_by, _iso(utcnow()), approval_id)).rowcount == 1

    def reopen_approval(self, approval_id: int) -> None:
        """An approved run that could not start (its environment was busy) waits again."""
        with self._transaction() as connection:
            connection.execute("UPDATE approvals SET state = 'pending', decided_by = NULL, "
                               "decided_at = NULL WHERE id = ?", (approval_id,))

    def set_approval_run(self, approval_id: int, run_id: int) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE approvals SET run_id = ? WHERE id = ?",
                               (run_id, approval_id))

    # Audit

    def audit(self, actor: str, action: str, outcome: str, environment: str | None = None,
              run_id: int | None = None, remote_addr: str | None = None,
              **detail: Any) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO audit (at, actor, action, outcome, environment, run_id, "
                "remote_addr, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (_iso(utcnow()), actor, action, outcome, environment, run_id, remote_addr,
                 json.dumps(detail, sort_keys=True, default=str) if detail else None))

    def audit_rows(self, limit: int = 100, offset: int = 0, action: str | None = None,
                   actor: str | None = None) -> list[dict[str, Any]]:
        clauses, params = [], []
        if action:
            clauses.append("action = ?")
            params.append(action)
        if actor:
            clauses.append("actor = ?")
            params.append(actor)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._connect() as connection:
            rows = connection.execute(f"SELECT * FROM audit{where} ORDER BY id DESC "
                                      "LIMIT ? OFFSET ?", [*params, limit, offset])
            result = []
            for row in rows:
                entry = dict(row)
                entry["detail"] = json.loads(entry["detail"]) if entry["detail"] else {}
                result.append(entry)
            return result

    # Webhook deliveries and schedules

    def add_delivery(self, keys: list[str], environment: str, provider: str,
                     delivery_id: str | None) -> bool:
        """Remember a delivery under each of its keys, in one transaction; False (and nothing
        written) if any of them was seen already."""
        try:
            with self._transaction() as connection:
                connection.executemany(
                    "INSERT INTO webhook_deliveries (key, environment, provider, delivery_id, "
                    "received_at) VALUES (?, ?, ?, ?, ?)",
                    [(key, environment, provider, delivery_id, _iso(utcnow())) for key in keys])
        except sqlite3.IntegrityError:
            return False
        return True

    def forget_deliveries(self, keys: list[str]) -> None:
        """A delivery that started nothing (its environment was busy) may be sent again."""
        with self._transaction() as connection:
            connection.executemany("DELETE FROM webhook_deliveries WHERE key = ?",
                                   [(key,) for key in keys])

    def set_schedule_outcome(self, key: str, at: datetime, outcome: str,
                             run_id: int | None = None, approval_id: int | None = None,
                             reason: str | None = None) -> None:
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO schedule_state (key, last_at, outcome, run_id, approval_id, reason) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "last_at = excluded.last_at, outcome = excluded.outcome, "
                "run_id = excluded.run_id, approval_id = excluded.approval_id, "
                "reason = excluded.reason", (key, _iso(at), outcome, run_id, approval_id, reason))

    def schedule_outcomes(self) -> dict[str, dict[str, Any]]:
        with self._connect() as connection:
            return {row["key"]: {**dict(row), "last_at": _datetime(row["last_at"])}
                    for row in connection.execute("SELECT * FROM schedule_state")}

    # Runs started by a console

    def add_launch(self, run_uuid: str, run_id: int, environment: str, kind: str) -> None:
        with self._transaction() as connection:
            connection.execute("INSERT INTO launches (run_uuid, run_id, environment, kind, "
                               "console_pid, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (run_uuid, run_id, environment, kind, os.getpid(),
                                _iso(utcnow())))

    def set_launch_pid(self, run_uuid: str, pid: int) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE launches SET pid = ? WHERE run_uuid = ?", (pid, run_uuid))

    def finish_launch(self, run_uuid: str) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE launches SET state = 'finished', finished_at = ? "
                               "WHERE run_uuid = ?", (_iso(utcnow()), run_uuid))

    def running_launches(self) -> list[dict[str, Any]]:
        with self._connect() as connection:
            return [dict(row) for row in connection.execute(
                "SELECT * FROM launches WHERE state = 'running' ORDER BY started_at")]
