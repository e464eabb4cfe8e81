"""Throw-away PostgreSQL and MariaDB servers for integration tests.

Each server lives in its own temporary directory, listens on 127.0.0.1 on a free port and on a
unix socket in that directory, and is removed when the test session ends. When the tests run as
root, the servers run as the packages' unprivileged system users (initdb refuses root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("SLIPWAY_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class DatabaseServer:
    """Where a running test server listens, and how to log in as its superuser."""

    engine: str
    host: str
    port: int
    user: str
    password: str
    socket_dir: str
    socket_path: str
    data_dir: str
    extra: dict = field(default_factory=dict)

    def url(self, database: str) -> str:
        scheme = "postgresql" if self.engine == "postgresql" else "mysql"
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _service_user(name: str) -> str | None:
    """The user to run a server as: the package's system user when we are root."""
    if os.geteuid() != 0:
        return None
    pwd.getpwnam(name)
    return name


def _run_as(user: str | None, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def _popen_as(user: str | None, argv: list[str], log: Path) -> subprocess.Popen:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_socket(path: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.1)
    raise RuntimeError(f"server did not create {path} within {timeout}s:\n{log.read_text()}")


def _owned_tempdir(prefix: str, user: str | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o755)
    return path


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def postgresql_server() -> Iterator[DatabaseServer]:
    """Start a PostgreSQL 15 server with scram-sha-256 over TCP and trust on its socket."""
    user = _service_user("postgres")
    base = _owned_tempdir("slipway-pg-", user)
    data_dir = base / "data"
    password = secrets.token_urlsafe(18)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        entry = pwd.getpwnam(user)
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    port = free_port()
    _run_as(user, [str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", "postgres",
                   "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                   "-E", "UTF8", "--locale=C.UTF-8"])
    log = base / "server.log"
    proc = _popen_as(user, [str(PG_BIN / "postgres"), "-D", str(data_dir), "-p", str(port),
                            "-k", str(base), "-c", "listen_addresses=127.0.0.1",
                            "-c", "fsync=off", "-c", "synchronous_commit=off",
                            "-c", "full_page_writes=off", "-c", "max_connections=200",
                            "-c", "shared_buffers=256MB"], log)
    sock = str(base / f".s.PGSQL.{port}")
    try:
        _wait_for_socket(sock, proc, log)
        # The socket appears slightly before the server accepts connections.
        deadline = time.monotonic() + 30
        while subprocess.run([str(PG_BIN / "pg_isready"), "-h", str(base), "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.1)
        yield DatabaseServer("postgresql", "127.0.0.1", port, "postgres", password,
                             str(base), sock, str(data_dir), {"pg_bin": str(PG_BIN)})
    finally:
        _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def mariadb_server() -> Iterator[DatabaseServer]:
    """Start a MariaDB server with a password for root@127.0.0.1 and root@localhost."""
    user = _service_user("mysql")
    base = _owned_tempdir("slipway-mariadb-", user)
    data_dir = base / "data"
    sock = str(base / "mysqld.sock")
    port = free_port()
    password = secrets.token_urlsafe(18)
    _run_as(user, ["mariadb-install-db", "--no-defaults", f"--datadir={data_dir}",
                   "--auth-root-authentication-method=normal", "--skip-test-db"],
            cwd=str(base))
    log = base / "server.log"
    argv = ["mariadbd", "--no-defaults", f"--datadir={data_dir}", f"--socket={sock}",
            f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={base / 'mysqld.pid'}",
            f"--tmpdir={base}",
            "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=512M",
            "--skip-name-resolve", "--max-connections=200"]
    if user:
        argv.append(f"--user={user}")
    proc = _popen_as(user, argv, log)
    try:
        _wait_for_socket(sock, proc, log)
        deadline = time.monotonic() + 30
        sql = ("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';"
               "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
               f"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY '{password}';"
               f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';"
               "FLUSH PRIVILEGES;")
        while True:
            result = subprocess.run(["mariadb", "--no-defaults", "-uroot", f"--socket={sock}",
                                     "-e", sql], capture_output=True, text=True)
            if result.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(result.stderr + log.read_text())
            time.sleep(0.2)
        yield DatabaseServer("mysql", "127.0.0.1", port, "root", password,
                             str(base), sock, str(data_dir))
    finally:
        _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def mysql_scratch_database(server: DatabaseServer, prefix: str = "t") -> Iterator[tuple]:
    """A fresh, empty MariaDB database on ``server`` (utf8mb4), dropped on the way out: an
    autocommit admin connection (pymysql) and the database's name."""
    import pymysql

    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = pymysql.connect(host=server.host, port=server.port, user=server.user,
                            password=server.password, autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield admin, name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
