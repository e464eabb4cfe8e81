"""What a first deploy must leave on the host: services up, the app healthy, secrets private."""

import json
import os
import re

import pytest

# The mysql scenario runs these same tests against MariaDB; the update scenario runs them on
# Debian 13, the others on Debian 12: the host says which servers it runs.
APP = os.environ.get("SLIPWAY_APP", "shop")
DB_VENDOR = os.environ.get("SLIPWAY_DB_VENDOR", "postgresql")
# "web" and "celery": the web server's and the Celery worker's units in the slot that serves
# (APP@blue or APP@green, APP-celery@blue...); beat is a singleton.
UNITS = ["web", "celery", f"{APP}-celerybeat.service"]
CACHE_SERVERS = ("redis-server", "valkey-server")


def database_unit(host) -> str:
    """The database's unit: PostgreSQL's one cluster (as Debian lists it), or MariaDB."""
    if DB_VENDOR == "mysql":
        return "mariadb"
    listed = host.check_output("pg_lsclusters --no-header")
    clusters = [line.split() for line in listed.splitlines()]
    assert len(clusters) == 1, clusters
    version, name = clusters[0][:2]
    return f"postgresql@{version}-{name}"


def cache_unit(host) -> str:
    """The one of Redis and Valkey whose package the redis role installed."""
    installed = [name for name in CACHE_SERVERS if host.package(name).is_installed]
    assert len(installed) == 1, installed
    return installed[0]


def unit_name(host, unit: str) -> str:
    if unit not in ("web", "celery"):
        return unit
    slot = host.check_output(f"readlink /srv/{APP}/slots/live")
    return f"{APP}@{slot}.service" if unit == "web" else f"{APP}-celery@{slot}.service"


@pytest.mark.parametrize("unit", UNITS)
def test_app_units_are_active_and_enabled(host, unit):
    service = host.service(unit_name(host, unit))
    assert service.is_running
    assert service.is_enabled


def test_only_the_serving_slot_runs_and_nginx_sends_requests_to_it(host):
    live = host.check_output(f"readlink /srv/{APP}/slots/live")
    idle = "green" if live == "blue" else "blue"
    assert not host.service(f"{APP}@{idle}.service").is_running
    assert not host.service(f"{APP}@{idle}.socket").is_enabled
    assert not host.service(f"{APP}-celery@{idle}.service").is_running
    upstream = host.file(f"/etc/nginx/slipway/{APP}-upstream.conf").content_string
    assert f"server unix:/run/{APP}/web-{live}.sock" in upstream
    assert host.file(f"/srv/{APP}/current").linked_to == \
        host.file(f"/srv/{APP}/slots/{live}").linked_to


@pytest.mark.parametrize("unit_of", [lambda host: "nginx", database_unit, cache_unit],
                         ids=["web", "database", "cache"])
def test_infrastructure_services_are_active(host, unit_of):
    assert host.service(unit_of(host)).is_running


def http_get(host, path: str) -> tuple[int, str, str]:
    """GET http://127.0.0.1PATH from the host itself (through nginx): status, type, body."""
    result = host.run(
        "python3 -c 'import sys, urllib.request;"
        f"r = urllib.request.urlopen(\"http://127.0.0.1{path}\", timeout=10);"
        "print(r.status, r.headers[\"Content-Type\"]); sys.stdout.write(r.read().decode())'"
    )
    assert result.rc == 0, result.stderr
    head, body = result.stdout.split("\n", 1)
    status, content_type = head.split(" ", 1)
    return int(status), content_type, body


def test_health_answers_200_through_nginx_with_database_and_redis_reachable(host):
    status, _, body = http_get(host, "/health/")
    assert status == 200
    health = json.loads(body)
    assert health["database"]["reachable"] is True
    assert health["database"]["vendor"] == DB_VENDOR
    assert health["redis"]["reachable"] is True


def test_admin_login_page_and_its_css_are_served(host):
    status, _, body = http_get(host, "/admin/login/")
    assert status == 200
    assert "Django site admin" in body
    status, content_type, _ = http_get(host, "/static/admin/css/base.css")
    assert status == 200
    assert content_type.startswith("text/css")


def test_celery_task_round_trip_through_redis(host):
    result = host.run(
        f"/srv/{APP}/bin/manage shell --command "
        "'from production.tasks import add; print(add.delay(2, 3).get(timeout=60))'"
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "5"


def test_logrotate_accepts_the_app_configuration(host):
    result = host.run(f"logrotate -d /etc/logrotate.d/{APP}")
    assert result.rc == 0, result.stderr
    output = result.stdout + result.stderr
    assert not re.search(r"^error:", output, re.MULTILINE | re.IGNORECASE), output
    assert f"/var/log/{APP}/*.log" in output


def test_env_file_is_0600_and_owned_by_the_app_user(host):
    env = host.file(f"/srv/{APP}/shared/.env")
    assert env.mode == 0o600
    assert env.user == APP
    assert "SECRET_KEY=" in env.content_string


def test_no_service_runs_as_root_except_the_nginx_master(host):
    processes = host.run("ps -eo user=,ppid=,comm=").stdout.splitlines()
    rows = [line.split(None, 2) for line in processes]
    service_names = ("gunicorn", "celery", "postgres", "mariadbd", *CACHE_SERVERS, "nginx")
    by_root = [(ppid, comm) for user, ppid, comm in rows
               if user == "root" and comm.startswith(service_names)]
    assert by_root == [("1", "nginx")], by_root
    assert any(comm == "gunicorn" and user == APP for user, _, comm in rows)
    assert any(comm == "celery" and user == APP for user, _, comm in rows)


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_hardened_to_an_exposure_of_2_or_lower(host, unit):
    unit = unit_name(host, unit)
    output = host.check_output(f"systemd-analyze security {unit} --no-pager")
    verdict = output.strip().splitlines()[-1]
    print(f"\nsystemd-analyze security {unit}: {verdict}")
    score = float(verdict.split("level for", 1)[1].split(":", 1)[1].split()[0])
    assert score <= 2.0, verdict
