"""Secrets planted the ways a deploy leaks them (a URL with a password, a vaulted value, a no_log
task's argument, a module's no_log argument, a role option marked no_log), real ansible-playbook
runs, then the raw bytes of the store searched for each secret."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from deploy_history_helpers import VENV_BIN, Project, closed_port

from slipway.history.store import HistoryStore, _connect_sqlite

URL_PASSWORD = "Url-Pass-4417"
STORE_URL = f"postgresql://deployer:{URL_PASSWORD}@db.example.com/app"
VAULTED = "Vaulted-Recipe-5521"  # in group_vars, under an ordinary name
VAULTED_EXTRA = "Vaulted-Courier-7730"  # in an extra vars file, under an ordinary name
LAUNCH_CODE = "Launch-Code-8890"  # an ordinary variable that a no_log task uses
MIRROR_WORD = "Mirror-Word-6152"  # an ordinary variable passed to a module's no_log argument
SALT = "Salt-Value-3306"  # a role option marked no_log, from group_vars
PEPPER = "Pepper-Param-2290"  # a role option marked no_log, given as a role parameter
CONSOLE_DB = "/srv/Console-Db-7741/history.sqlite3"  # roles/console marks it no_log
SECRETS = (URL_PASSWORD, VAULTED, VAULTED_EXTRA, LAUNCH_CODE, MIRROR_WORD, SALT, PEPPER,
           CONSOLE_DB)

LEAKY = """
- name: Deploy with planted secrets
  hosts: web
  gather_facts: false
  roles:
    - role: salted
      salted_pepper: "{{ pepper }}"
  tasks:
    - name: Show the store
      ansible.builtin.debug:
        msg: "store {{ store_url }}, password {{ store_url | urlsplit('password') }}"
    - name: Tell the recipe and the courier
      ansible.builtin.debug:
        msg: "recipe {{ recipe }}, courier {{ courier }}"
    - name: Arm the silo
      ansible.builtin.command: "printf %s {{ launch_code }}"
      changed_when: false
      no_log: true
    - name: Report the silo
      ansible.builtin.fail:
        msg: "the silo refused {{ launch_code }}"
      ignore_errors: true
    - name: Fetch from the mirror
      ansible.builtin.uri:
        url: "http://127.0.0.1:{{ mirror_port }}/"
        url_username: mirror
        url_password: "{{ mirror_word }}"
      ignore_errors: true
    - name: Mention the mirror
      ansible.builtin.debug:
        msg: "mirror word {{ mirror_word }}, console history {{ console_history_db }}"
"""


def _vault_password_file(project: Project) -> Path:
    return project.root / "vault-password"


def _vault(project: Project, name: str, value: str) -> str:
    """``name: !vault |...``, encrypted with the project's vault password."""
    result = subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "encrypt_string", "--vault-password-file",
         str(_vault_password_file(project)), "--name", name, value],
        capture_output=True, text=True, check=True, env=project.env())
    return result.stdout


def _leaky_project(root: Path, store_url: str) -> Project:
    project = Project(root, store_url, group_vars={
        "launch_code": LAUNCH_CODE, "mirror_word": MIRROR_WORD, "salted_salt": SALT,
        "pepper": PEPPER, "console_history_db": CONSOLE_DB, "mirror_port": closed_port()})
    _vault_password_file(project).write_text("correct-vault-password\n")
    group_vars = project.inventory.parent / "group_vars"
    (group_vars / "web.yml").write_text("---\n" + _vault(project, "recipe", VAULTED))
    (root / "extra.yml").write_text("---\n" + _vault(project, "courier", VAULTED_EXTRA))
    role = root / "roles" / "salted"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(textwrap.dedent("""\
        ---
        argument_specs:
          main:
            options:
              salted_salt: {type: str, required: true, no_log: true}
              salted_pepper: {type: str, required: true, no_log: true}
        """))
    (role / "tasks" / "main.yml").write_text(textwrap.dedent("""\
        ---
        - name: Season
          ansible.builtin.debug:
            msg: "salt {{ salted_salt }}, pepper {{ salted_pepper }}"
        """))
    return project


def _run_leaky(project: Project) -> subprocess.CompletedProcess:
    playbook = project.playbook("deploy", LEAKY)
    old_umask = os.umask(0)  # a store created 0644 (or worse) would show here
    try:
        return project.run(playbook, "--vault-password-file", str(_vault_password_file(project)),
                           "-e", f"store_url={STORE_URL}", "-e", f"@{project.root / 'extra.yml'}")
    finally:
        os.umask(old_umask)


def _store_bytes(store_url: str, request) -> bytes:
    """Every byte the store keeps: the SQLite file and its journals, or a dump of the
    PostgreSQL database."""
    if "://" not in store_url:
        return b"".join(Path(store_url + suffix).read_bytes() for suffix in ("", "-wal", "-shm")
                        if Path(store_url + suffix).exists())
    server = request.getfixturevalue("pg_server")
    dump = subprocess.run(
        [str(Path(server.extra["pg_bin"]) / "pg_dump"), "-h", server.socket_dir,
         "-p", str(server.port), "-U", server.user, "--no-owner",
         request.getfixturevalue("pg_database")],
        capture_output=True, check=True)
    return dump.stdout


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_planted_secrets_reach_no_byte_of_the_store(tmp_path, store_url, request):
    project = _leaky_project(tmp_path / "p", store_url)

    result = _run_leaky(project)

    assert result.returncode == 0, result.stdout + result.stderr
    for secret in SECRETS:
        assert secret in result.stdout, secret  # the terminal shows each; the store must not
    raw = _store_bytes(store_url, request)
    assert b"the silo refused" in raw  # the run was recorded
    for secret in SECRETS:
        assert secret.encode() not in raw, secret
    log = project.only_run()["logs"]
    assert "store postgresql://deployer:********@db.example.com/app, password ********" in log
    assert "recipe ********, courier ********" in log
    assert "salt ********, pepper ********" in log
    assert "the silo refused ********" in log
    assert "mirror word ********, console history ********" in log


def test_sqlite_store_is_created_readable_by_its_owner_only(tmp_path):
    store_path = str(tmp_path / "data" / "history.sqlite3")
    project = _leaky_project(tmp_path / "p", store_path)

    result = _run_leaky(project)

    assert result.returncode == 0, result.stdout + result.stderr
    files = [Path(store_path + suffix) for suffix in ("", "-wal", "-shm")]
    assert files[0].exists()
    assert {str(path): stat.S_IMODE(path.stat().st_mode) for path in files if path.exists()} \
        == {str(path): 0o600 for path in files if path.exists()}


def test_an_existing_store_readable_by_others_is_made_private(tmp_path):
    store_path = tmp_path / "history.sqlite3"
    with sqlite3.connect(store_path) as connection:  # an older store, 0644
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE leftover (x)")
    store_path.chmod(0o644)
    Path(f"{store_path}-wal").touch()
    Path(f"{store_path}-wal").chmod(0o644)

    with HistoryStore(str(store_path)) as store:
        store.ensure_schema()

    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{store_path}-wal").stat().st_mode) == 0o600


def test_making_the_store_private_keeps_the_locks_of_connections_already_open(tmp_path):
    # Closing any descriptor of a file drops every POSIX lock the process holds on it.
    store_path = str(tmp_path / "history.sqlite3")
    with HistoryStore(store_path) as store:
        store.ensure_schema()
    writer = sqlite3.connect(store_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the write lock, held by this process

    _connect_sqlite(store_path, 5).close()  # another thread of the process opens the store

    rival = subprocess.run(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=0,"
         " isolation_level=None); c.execute('BEGIN IMMEDIATE')", store_path],
        capture_output=True, text=True)
    writer.rollback()
    writer.close()
    assert rival.returncode != 0 and "database is locked" in rival.stderr, rival.stderr


def test_a_spooled_run_keeps_its_secrets_out_of_a_private_file(tmp_path):
    project = _leaky_project(tmp_path / "p",
                             f"postgresql://nobody:x@127.0.0.1:{closed_port()}/none")

    result = _run_leaky(project)

    assert result.returncode == 0, result.stdout + result.stderr
    [spooled] = project.spool_dir.rglob("*.jsonl")
    assert stat.S_IMODE(spooled.stat().st_mode) == 0o600
    raw = spooled.read_bytes()
    assert b"the silo refused" in raw
    for secret in SECRETS:
        assert secret.encode() not in raw, secret
