"""A FastAPI + SQLAlchemy + Alembic app on MariaDB with an npm-built front end, deployed with
app_framework python (no Django step): v1, then v2 (a new Alembic revision and a new bundle,
both served after the switch), v3 (a revision that fails partway: the deploy stops with v2
serving), a rollback of the code (the database stays), and one with -e restore_db=true (the
schema back). Beside it on the same host, name and port, the example Django app under /shop/
(converge.yml), with its own Redis ACL user, database, units and releases, which the FastAPI
app's deploys and rollbacks leave alone. The tests run in order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "testbed"))

# live_slot() reads the example Django app's root (/srv/shop), the app beside the FastAPI one.
from deploy_steps import Scenario, assert_no_failed_request, live_slot, output  # noqa: E402

SCENARIO = Scenario("slipway-molecule-apps")
RELATION = "ai_outputs.task_id -> tasks.id"
# deploy_steps' current() and status() read the example Django app's root (/srv/shop).
ROOT = "/srv/tasks"


def current(host) -> str:
    return Path(host.check_output(f"readlink {ROOT}/current")).name


def status(host, release: str) -> dict:
    return json.loads(host.file(f"{ROOT}/releases/{release}/.slipway-status.json").content_string)


def request(path: str, method: str = "GET", body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(SCENARIO.url(path), data=data, method=method, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def history(*args: str) -> dict:
    """slipway-history's JSON answer, from the store molecule.yml records every run in."""
    command = [str(Path(sys.executable).parent / "slipway-history"), *args, "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "SLIPWAY_HISTORY_DB": str(SCENARIO.ephemeral
                                                                         / "history.sqlite3")})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mysql(host, sql: str) -> str:
    return host.check_output("mysql -N -B tasks -e %s", sql)


def alembic_head(host) -> str:
    return mysql(host, "SELECT version_num FROM alembic_version")


def columns(host) -> set[str]:
    return set(mysql(host, "SELECT column_name FROM information_schema.columns "
                           "WHERE table_schema = 'tasks' AND table_name = 'tasks'").split())


def test_v1_serves_its_release_its_api_and_its_bundle(host):
    status_code, body = request("/health")
    assert status_code == 200, body
    assert json.loads(body)["release"] == SCENARIO.release_id("v1")
    assert current(host) == SCENARIO.release_id("v1")
    assert alembic_head(host) == "001"
    status_code, bundle = request("/assets/app.js")
    assert status_code == 200 and "bundle v1" in bundle
    environment = host.file("/srv/tasks/shared/.env").content_string
    assert "DATABASE_URL=" in environment
    assert "SECRET_KEY" not in environment and "DJANGO_SETTINGS_MODULE" not in environment
    assert not host.file("/srv/tasks/bin/manage-release").exists


SHOP = "/srv/shop"
# The release the Django app serves, noted by the first of its tests for the last.
SHOP_SERVING: dict[str, str] = {}


def redis_whoami(host, user: str, password_file: str) -> str:
    """ACL WHOAMI as the user (the password in REDISCLI_AUTH, not on redis-cli's command line)."""
    password = SCENARIO.credential(password_file)
    return host.check_output(f"REDISCLI_AUTH={password} redis-cli --no-auth-warning "
                             f"--user {user} ACL WHOAMI")


def test_the_django_app_is_served_under_its_prefix_beside_it(host):
    status_code, body = request("/shop/health/")
    assert status_code == 200, body
    health = json.loads(body)
    release = Path(host.check_output(f"readlink {SHOP}/current")).name
    assert health["release"] == release
    assert health["redis"]["reachable"] and health["database"]["vendor"] == "mysql"
    SHOP_SERVING["release"] = release
    # Django builds its URLs under the prefix (SCRIPT_NAME); nginx serves its static files there.
    status_code, page = request("/shop/admin/login/")
    assert status_code == 200 and 'action="/shop/admin/login/' in page
    assert "/shop/static/admin/css/base.css" in page
    status_code, css = request("/shop/static/admin/css/base.css")
    assert status_code == 200 and "body" in css
    # The FastAPI app still has / (its health names its own release).
    assert json.loads(request("/health")[1])["release"] == SCENARIO.release_id("v1")
    # Each app its own Redis ACL user, in its own environment.
    assert redis_whoami(host, "tasks", "redis_password") == "tasks"
    assert redis_whoami(host, "shop", "shop_redis_password") == "shop"
    assert "redis://tasks:" in host.file("/srv/tasks/shared/.env").content_string
    assert "redis://shop:" in host.file(f"{SHOP}/shared/.env").content_string
    assert host.service(f"shop-celery@{live_slot(host)}.service").is_running
    assert host.service(f"shop@{live_slot(host)}.service").is_running
    assert host.file("/etc/nginx/slipway/mounts/_-80/shop.conf").exists
    assert not host.file("/etc/nginx/sites-enabled/slipway-mounts-_-80.conf").exists


def test_v2_serves_its_new_revision_and_bundle_after_the_switch(host):
    # An orphan as the seed's: an output whose task is deleted (ai_outputs has no foreign key).
    status_code, body = request("/api/tasks", "POST", {"title": "doomed"})
    assert status_code == 201, body
    task = json.loads(body)["id"]
    assert request(f"/api/tasks/{task}/outputs", "POST", {"content": "left behind"})[0] == 201
    assert request(f"/api/tasks/{task}", "DELETE")[0] == 204

    result, summary = SCENARIO.under_load("deploy.yml", "/health", "-e",
                                          f"app_source={SCENARIO.versions / 'v2'}")

    assert result.returncode == 0, output(result)[-8000:]
    assert_no_failed_request(summary)
    v2 = SCENARIO.release_id("v2")
    assert current(host) == v2
    assert alembic_head(host) == "002" and "priority" in columns(host)
    status_code, body = request("/api/tasks", "POST", {"title": "urgent", "priority": 7})
    assert status_code == 201 and json.loads(body)["priority"] == 7
    assert "bundle v2" in request("/assets/app.js")[1]
    record = status(host, v2)
    assert record["status"] == "succeeded" and record["backup"]
    assert record["fk_orphans"] == [{"relation": RELATION, "orphans": 1, "rows": 1}]
    assert f"{RELATION}: 1 orphans of 1 rows" in " ".join(output(result).split())
    # The report is in the history, in the run that deployed v2.
    run = history("list", "--kind", "deploy", "--limit", "1")["runs"][0]
    assert (run["status"], run["release_id"]) == ("success", v2)
    logs = history("log", str(run["id"]))["logs"]
    assert f"{RELATION}: 1 orphans of 1 rows" in " ".join(logs.split())


def test_a_failing_migration_stops_the_deploy_with_v2_serving(host):
    v2 = SCENARIO.release_id("v2")

    result, summary = SCENARIO.under_load("deploy.yml", "/health", "-e",
                                          f"app_source={SCENARIO.versions / 'v3'}")

    assert result.returncode != 0
    text = " ".join(output(result).split())
    assert "The app's migrations (alembic upgrade head) failed" in text
    assert_no_failed_request(summary)
    assert set(summary["releases"]) == {v2}
    assert current(host) == v2
    assert alembic_head(host) == "002"
    assert json.loads(request("/health")[1])["release"] == v2


def test_a_rollback_restoring_the_backup_brings_the_schema_back(host):
    # v2's deploy took its backup before its revision (the database at 001).
    v2 = SCENARIO.release_id("v2")

    result = SCENARIO.playbook("rollback.yml", "-e", "restore_db=true")

    assert result.returncode == 0, output(result)[-8000:]
    assert current(host) == SCENARIO.release_id("v1")
    assert alembic_head(host) == "001"
    assert "priority" not in columns(host)
    assert request("/api/tasks")[0] == 200
    assert "bundle v1" in request("/assets/app.js")[1]
    assert status(host, v2)["status"] == "rolled_back"


def test_a_rollback_without_restore_switches_the_code_and_says_the_database_stays(host):
    v1 = SCENARIO.release_id("v1")
    result = SCENARIO.deploy("v2")
    assert result.returncode == 0, output(result)[-8000:]
    assert alembic_head(host) == "002"

    result = SCENARIO.playbook("rollback.yml")

    assert result.returncode == 0, output(result)[-8000:]
    assert "Rolling back the code only" in " ".join(output(result).split())
    assert current(host) == v1
    assert json.loads(request("/health")[1])["release"] == v1
    # The database keeps v2's revision: v1's code runs on it (the column has a default).
    assert alembic_head(host) == "002"
    assert request("/api/tasks")[0] == 200


def test_the_django_app_was_left_alone_by_the_fastapi_apps_deploys_and_rollbacks(host):
    status_code, body = request("/shop/health/")
    assert status_code == 200, body
    assert json.loads(body)["release"] == SHOP_SERVING["release"]
    assert Path(host.check_output(f"readlink {SHOP}/current")).name == SHOP_SERVING["release"]
    assert request("/shop/admin/login/")[0] == 200
