"""The console's database on its own: a file made by an earlier console is brought up to date."""

from __future__ import annotations

import sqlite3

import pytest

from slipway.console.config import ConfigError, load_config
from slipway.console.db import ConsoleDB

EARLIER_SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'deployer', 'viewer')),
    environments TEXT NOT NULL DEFAULT '[]', created_at TEXT NOT NULL);
CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_digest TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, last_used_at TEXT);
CREATE TABLE approvals (id INTEGER PRIMARY KEY AUTOINCREMENT, environment TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('deploy', 'rollback')), params TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    decided_by TEXT, decided_at TEXT, run_id INTEGER);
INSERT INTO users VALUES (1, 'dana', 'hash', 'deployer', '["production"]', '2025-01-01');
INSERT INTO tokens VALUES (1, 1, 'digest', '2025-01-01 00:00:00.000000', NULL);
INSERT INTO approvals VALUES (1, 'production', 'deploy', '{}', 'dana', '2025-01-01', 'pending',
    NULL, NULL, NULL);
"""


def test_an_earlier_database_gets_token_expiry_and_cancelled_requests_keeping_its_rows(tmp_path):
    path = tmp_path / "console.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(EARLIER_SCHEMA)
    db = ConsoleDB(path)
    db.create()
    db.create()  # a second start changes nothing

    assert db.user_for_token("digest").name == "dana", "a token of before does not expire"
    assert [token["expires_at"] for token in db.tokens(1)] == [None]
    assert db.delete_user("dana", "root") == [1]
    assert db.approval(1)["state"] == "cancelled" and db.approval(1)["decided_by"] == "root"
    assert db.user_for_token("digest") is None


def test_the_new_limits_are_read_from_the_configuration(tmp_path):
    (tmp_path / "inventory").mkdir()
    config = tmp_path / "console.yml"
    config.write_text("environments: {staging: {inventory: inventory}}\n"
                      "login_account_max_failures: 7\nmax_body_bytes: 4096\n")
    loaded = load_config(config)
    assert (loaded.login_account_max_failures, loaded.max_body_bytes) == (7, 4096)
    config.write_text("environments: {staging: {inventory: inventory}}\nmax_body_bytes: 10\n")
    with pytest.raises(ConfigError, match="max_body_bytes must be a number of at least 1024"):
        load_config(config)


def test_an_earlier_database_takes_approval_requests_of_commands(tmp_path):
    path = tmp_path / "console.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.executescript(EARLIER_SCHEMA)
    db = ConsoleDB(path)
    db.create()

    approval_id = db.add_approval("production", "command", {"command_name": "backfill_po"},
                                  "dana")
    assert db.approval(approval_id)["kind"] == "command"
    assert db.approval(1)["kind"] == "deploy"


@pytest.mark.parametrize(("commands", "error"), [
    ("[{name: backfill, command: 'python manage.py backfill'}]", "without 'python manage.py'"),
    ("[{name: backfill, command: 'back-fill --days 7'}]", "'back-fill' is not a manage.py"),
    ("[{name: backfill, command: \"backfill --note 'open\"}]", "check its quotes"),
    ("[{name: backfill, command: ''}]", "no command given"),
    ("[{name: 'a b', command: backfill}]", "name 'a b' must be letters"),
    ("[{name: x, command: a}, {name: x, command: b}]", "the name 'x' is given twice"),
    ("[{name: x, command: a, dry_run: 'yes'}]", "dry_run must be true or false"),
    ("[{name: x, command: a, shell: true}]", "unknown keys ['shell']"),
    ("backfill_po", "must be a list"),
])
def test_a_bad_command_in_the_allow_list_stops_the_console_naming_it(tmp_path, commands, error):
    (tmp_path / "inventory").mkdir()
    config = tmp_path / "console.yml"
    config.write_text("environments: {staging: {inventory: inventory, commands: "
                      f"{commands}}}}}\n")
    with pytest.raises(ConfigError, match="environment staging") as raised:
        load_config(config)
    assert error in str(raised.value)


def test_the_allow_list_keeps_each_command_line_as_written(tmp_path):
    (tmp_path / "inventory").mkdir()
    config = tmp_path / "console.yml"
    config.write_text("environments:\n  staging:\n    inventory: inventory\n    commands:\n"
                      "      - {name: backfill_po, command: 'backfill_po --days 7',"
                      " dry_run: true}\n"
                      "      - {name: note, command: \"x --n '{{ 1 + 1 }}'\"}\n")
    staging = load_config(config).environments["staging"]
    assert [(c.name, c.command, c.dry_run) for c in staging.commands] == [
        ("backfill_po", "backfill_po --days 7", True), ("note", "x --n '{{ 1 + 1 }}'", False)]
    assert staging.manage_playbook.name == "manage.yml" and staging.manage_playbook.is_file()
    assert staging.logs_playbook.name == "logs.yml" and staging.logs_playbook.is_file()
    assert staging.notify_playbook.name == "notify.yml" and staging.notify_playbook.is_file()
