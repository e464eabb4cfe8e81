"""The FastAPI app of tests/testbed/fastapi_app.py on a real MariaDB, run the way slipway runs a
generic Python app (issue 14), so the apps scenario starts from an app known to work:

- each release is a copy of a version's tree in releases/RELEASE_ID (the id package_source gives
  the tree), reached through a slot's link, and every command runs in the slot with the
  release's venv first on PATH and the environment the app role writes: DATABASE_URL rendered
  from roles/app/tasks/config.yml's own expression (mysql://, the password URL-encoded; this
  database user's password needs it), plus the app_env of fastapi_app.DEPLOY;
- the migrate command is fastapi_app.DEPLOY's, split like a shell line; the web process is
  uvicorn serving app_asgi_application on a free 127.0.0.1 port.

v1 migrates to 001 and serves; deleting a task leaves its AI output behind (an orphan for
app_fk_orphans) while its issues and logs go. v2 migrates to 002 and returns the new column.
v3's migration fails partway with v2 serving: non-zero exit, alembic_version still 002, and v2
still answers and writes. The tests run in order on one database.

Needs PyPI (uv installs the app's requirements once per session) and MariaDB's binaries.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
import uv
import yaml
from ansible_collections.slipway.django.plugins.modules import package_source
from dbservers import DatabaseServer, free_port, mysql_scratch_database

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "testbed"))

import fastapi_app  # noqa: E402
from role_templates import app_database_url  # noqa: E402

APP_DEFAULTS = yaml.safe_load((ROOT / "roles" / "app" / "defaults" / "main.yml").read_text())
DEPLOY = fastapi_app.DEPLOY
TABLES = {"users", "tasks", "ai_outputs", "issues", "task_logs", "alembic_version"}


@dataclass
class Site:
    """The app's database, and the releases and slots directory of one app host."""

    root: Path
    venv: Path
    url: str
    admin: pymysql.connections.Connection

    def environment(self) -> dict[str, str]:
        return {"PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": str(self.root), "DATABASE_URL": self.url, **DEPLOY["app_env"]}

    def install(self, tree: Path, slot: str) -> tuple[Path, str]:
        """Copy tree into releases/ID and point slots/SLOT at it; return the slot and the id."""
        exclude = APP_DEFAULTS["app_source_exclude"]
        release = package_source.tree_digest(str(tree), package_source.walk_files(
            str(tree), exclude))[:12]
        target = self.root / "releases" / release
        if not target.exists():
            shutil.copytree(tree, target)
        link = self.root / "slots" / slot
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(Path("..") / "releases" / release)
        return link, release

    def migrate(self, slot: Path) -> subprocess.CompletedProcess:
        return self.run(slot, *shlex.split(DEPLOY["app_migrate_command"]))

    def run(self, slot: Path, *argv: str) -> subprocess.CompletedProcess:
        """A command in the slot, as the release wrapper would run it."""
        return subprocess.run(argv, cwd=slot, env=self.environment(), capture_output=True,
                              text=True, timeout=180, check=False)

    def query(self, sql: str, *args) -> list[tuple]:
        with self.admin.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def revision(self) -> list[str]:
        return [row[0] for row in self.query("SELECT version_num FROM alembic_version")]

    def columns(self, table: str) -> set[str]:
        return {row[0] for row in self.query(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = %s", table)}


@contextlib.contextmanager
def serving(site: Site, slot: Path):
    """uvicorn serving the slot's release on a free port: yields its base URL."""
    port = free_port()
    log = site.root / f"uvicorn-{slot.name}-{port}.log"
    argv = ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--no-server-header",
            DEPLOY["app_asgi_application"]]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=slot, env=site.environment(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {proc.returncode}:\n{log.read_text()}")
            try:
                request("GET", base + "/")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"uvicorn did not answer:\n{log.read_text()}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request(method: str, url: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    assert url.startswith("http://127.0.0.1:"), url
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - checked above
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:  # noqa: S310
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    return status, json.loads(text) if text else None


@pytest.fixture(scope="session")
def app_venv(tmp_path_factory) -> Path:
    """One venv with the app's pinned requirements (every version has the same), made by uv."""
    base = tmp_path_factory.mktemp("fastapi-venv")
    requirements = base / "requirements.txt"
    requirements.write_text(fastapi_app.REQUIREMENTS)
    venv = base / "venv"
    uv_bin = uv.find_uv_bin()
    subprocess.run([uv_bin, "venv", "--no-config", "--quiet", "--python", sys.executable,
                    str(venv)], check=True, timeout=120)
    subprocess.run([uv_bin, "pip", "install", "--no-config", "--quiet", "--python",
                    str(venv / "bin" / "python"), "-r", str(requirements)],
                   check=True, timeout=600)
    return venv


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    trees = fastapi_app.write_versions(tmp_path_factory.mktemp("fastapi-app"))
    assert {(tree / DEPLOY["app_requirements_file"]).read_text() for tree in trees.values()} == {
        fastapi_app.REQUIREMENTS}
    return trees


@pytest.fixture(scope="module")
def site(mysql_server: DatabaseServer, app_venv, tmp_path_factory) -> Site:
    """A fresh database and its own user, whose password needs URL-encoding."""
    password = f"p/w%d@:{secrets.token_hex(6)}?#"
    with mysql_scratch_database(mysql_server, "api") as (admin, name):
        user = name
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cursor.execute(f"GRANT ALL ON `{name}`.* TO '{user}'@'127.0.0.1'")
            cursor.execute(f"USE `{name}`")
        url = app_database_url("mysql", user, password, mysql_server.host, mysql_server.port, name)
        assert url.startswith("mysql://") and password not in url
        yield Site(root=tmp_path_factory.mktemp("srv-api"), venv=app_venv, url=url, admin=admin)
        with admin.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_v1_migrates_serves_and_leaves_orphans_behind(site, versions):
    slot, release = site.install(versions["v1"], "blue")
    result = site.migrate(slot)
    assert result.returncode == 0, result.stdout + result.stderr
    assert site.revision() == ["001"]
    assert {row[0] for row in site.query("SHOW TABLES")} == TABLES
    check = site.run(slot, "alembic", "check")
    assert check.returncode == 0, check.stdout + check.stderr

    with serving(site, slot) as base:
        status, health = request("GET", base + "/health")
        assert status == 200
        assert health == {"status": "ok", "release": release, "version": "v1",
                          "database": {"reachable": True}}
        status, task = request("POST", base + "/api/tasks", {"title": "Write the report"})
        assert status == 201 and task["title"] == "Write the report" and "priority" not in task
        status, tasks = request("GET", base + "/api/tasks")
        assert status == 200 and [entry["id"] for entry in tasks] == [task["id"]]

        # A task with an output, an issue and a log line, then deleted through the API.
        status, doomed = request("POST", base + "/api/tasks", {"title": "Summarise the call"})
        assert status == 201
        status, output = request("POST", f"{base}/api/tasks/{doomed['id']}/outputs",
                                 {"content": "A summary."})
        assert status == 201 and output["task_id"] == doomed["id"]
        site.query("INSERT INTO issues (task_id, severity, message) VALUES (%s, 'low', 'x')",
                   doomed["id"])
        site.query("INSERT INTO task_logs (task_id, level, message) VALUES (%s, 'INFO', 'y')",
                   doomed["id"])
        status, _ = request("DELETE", f"{base}/api/tasks/{doomed['id']}")
        assert status == 204
        status, _ = request("POST", f"{base}/api/tasks/{doomed['id']}/outputs", {"content": ""})
        assert status == 404

    orphans = site.query("SELECT ao.id, ao.task_id FROM ai_outputs ao"
                         " LEFT JOIN tasks t ON t.id = ao.task_id WHERE t.id IS NULL")
    assert orphans == [(output["id"], doomed["id"])]
    for table in ("issues", "task_logs"):
        assert site.query(f"SELECT COUNT(*) FROM {table}") == [(0,)], table


def test_v2_adds_the_priority_the_api_returns(site, versions):
    slot, release = site.install(versions["v2"], "green")
    assert "priority" not in site.columns("tasks")
    result = site.migrate(slot)
    assert result.returncode == 0, result.stdout + result.stderr
    assert site.revision() == ["002"]
    assert "priority" in site.columns("tasks")
    check = site.run(slot, "alembic", "check")
    assert check.returncode == 0, check.stdout + check.stderr

    with serving(site, slot) as base:
        status, health = request("GET", base + "/health")
        assert status == 200 and (health["release"], health["version"]) == (release, "v2")
        status, tasks = request("GET", base + "/api/tasks")
        assert status == 200
        assert [(task["title"], task["priority"]) for task in tasks] == [("Write the report", 0)]
        status, urgent = request("POST", base + "/api/tasks", {"title": "Fix the outage",
                                                               "priority": 5})
        assert status == 201 and urgent["priority"] == 5
        status, tasks = request("GET", base + "/api/tasks")
        assert [task["title"] for task in tasks] == ["Fix the outage", "Write the report"]


def test_v3_fails_its_migration_partway_while_v2_serves(site, versions):
    live, live_release = site.install(versions["v2"], "green")
    with serving(site, live) as base:
        slot, _ = site.install(versions["v3"], "blue")
        result = site.migrate(slot)
        assert result.returncode != 0
        assert "REFERENCES projects" in result.stderr, result.stderr
        assert "Foreign key constraint is incorrectly formed" in result.stderr, result.stderr
        # MariaDB committed the column before the foreign key failed; the revision stays 002.
        assert site.revision() == ["002"]
        assert "project_id" in site.columns("tasks")

        status, health = request("GET", base + "/health")
        assert status == 200 and (health["release"], health["version"]) == (live_release, "v2")
        status, task = request("POST", base + "/api/tasks", {"title": "After the failed deploy"})
        assert status == 201
        status, tasks = request("GET", base + "/api/tasks")
        assert status == 200 and task["id"] in [entry["id"] for entry in tasks]


def test_health_answers_503_when_the_database_is_unreachable(site, versions):
    slot, release = site.install(versions["v1"], "blue")
    closed = app_database_url("mysql", "nobody", "x", "127.0.0.1", free_port(), "nothing")
    unreachable = Site(root=site.root, venv=site.venv, url=closed, admin=site.admin)
    with serving(unreachable, slot) as base:
        status, health = request("GET", base + "/health")
    assert status == 503
    assert health == {"status": "unavailable", "release": release, "version": "v1",
                      "database": {"reachable": False, "error": "OperationalError"}}
