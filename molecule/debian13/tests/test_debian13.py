"""Debian 13 hosts after provision.yml: the release's versions chosen from apt, each service up,
and the app's database, role and cache password working as on Debian 12."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import testinfra

APP = "shop"
HOST = "slipway-molecule-debian13"
MARIADB_HOST = "slipway-molecule-debian13-mariadb"
CREDENTIALS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "credentials"


def get_host(name: str):
    return testinfra.get_host(f"ansible://{name}",
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def host():
    return get_host(HOST)


@pytest.fixture(scope="module")
def mariadb_host():
    return get_host(MARIADB_HOST)


def secret(name: str) -> str:
    return (CREDENTIALS / name).read_text().strip()


def python(host, code: str) -> str:
    result = host.run(f"python3 -c {shlex.quote(code)}")
    assert result.rc == 0, result.stderr
    return result.stdout


def test_both_hosts_run_debian_13(host, mariadb_host):
    for each in (host, mariadb_host):
        assert each.file("/etc/debian_version").content_string.startswith("13.")


@pytest.mark.parametrize("unit", ["postgresql@17-main", "valkey-server", "nginx"])
def test_services_are_active_and_enabled(host, unit):
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_mariadb_is_active_and_enabled(mariadb_host):
    assert mariadb_host.service("mariadb").is_running
    assert mariadb_host.service("mariadb").is_enabled


def test_postgresql_is_17_the_version_debian_13_ships(host):
    version = postgres_query(host, "SHOW server_version")
    assert version.startswith("17."), version
    assert not host.package("postgresql-15").is_installed


def test_nginx_is_1_26(host):
    assert host.run("nginx -v").stderr.startswith("nginx version: nginx/1.26.")


def test_python_is_3_13_with_venv(host):
    assert host.check_output("python3 --version").startswith("Python 3.13.")
    assert host.run("python3 -m venv --without-pip /tmp/venv-check").rc == 0


def test_the_app_user_has_no_login_shell(host):
    user = host.user(APP)
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == f"/srv/{APP}"


def psql_as_app(host, password: str):
    return host.run("PGPASSWORD=%s psql -h 127.0.0.1 -U %s -d %s -Atc %s", password, APP, APP,
                    "SELECT current_user, current_database()")


def postgres_query(host, sql: str) -> str:
    return host.check_output("runuser -u postgres -- psql -Atc %s", sql)


def test_the_app_role_logs_in_to_its_database_with_its_password(host):
    result = psql_as_app(host, secret("db_password"))
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == f"{APP}|{APP}"
    assert psql_as_app(host, "not-the-password").rc != 0


def test_the_app_role_password_is_stored_and_checked_as_scram(host):
    stored = postgres_query(host, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{APP}'")
    assert stored.startswith("SCRAM-SHA-256$")
    methods = postgres_query(host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules "
                                   f"WHERE type = 'host' AND '{APP}' = ANY(user_name)")
    assert methods.split() == ["scram-sha-256"]


CACHE_SESSION = (
    "import socket, sys\n"
    "def ask(s, *words):\n"
    "    s.sendall(b'*%d\\r\\n' % len(words)\n"
    "              + b''.join(b'$%d\\r\\n%s\\r\\n' % (len(w), w) for w in words))\n"
    "    return s.recv(4096).decode().splitlines()[-1]\n"
    "user, password = sys.argv[1].encode(), sys.argv[2].encode()\n"
    "with socket.create_connection(('127.0.0.1', 6379), timeout=5) as s:\n"
    "    print(ask(s, b'PING'))\n"
    "    print(ask(s, b'AUTH', password))\n"
    "    print(ask(s, b'AUTH', user, b'not-the-password'))\n"
    "    print(ask(s, b'AUTH', user, password))\n"
    "    print(ask(s, b'ACL', b'WHOAMI'))\n"
    "    print(ask(s, b'PING'))\n"
    "    print(ask(s, b'CONFIG', b'GET', b'maxmemory-policy'))\n"
)


def test_valkey_requires_the_apps_user_and_keeps_the_settings(host):
    # The app's own ACL user; the default user is off on a new host (the password alone is
    # refused); CONFIG is the admin's, not the app's.
    result = host.run("python3 -c %s %s %s", CACHE_SESSION, APP, secret("redis_password"))
    assert result.rc == 0, result.stderr
    ping, default, wrong, right, whoami, ping_again, config = result.stdout.splitlines()
    assert ping.startswith("-NOAUTH")
    assert default.startswith("-WRONGPASS")
    assert wrong.startswith("-WRONGPASS")
    assert (right, whoami, ping_again) == ("+OK", APP, "+PONG")
    assert config.startswith("-NOPERM")
    policy = host.run("valkey-cli -s /run/valkey/valkey-server.sock --user slipway-admin "
                      "--askpass CONFIG GET maxmemory-policy < /etc/valkey/slipway-admin.secret")
    assert policy.stdout.split() == ["maxmemory-policy", "noeviction"], policy.stdout
    for path in ("/etc/valkey/users.acl", f"/etc/valkey/users.d/{APP}.acl"):
        users = host.file(path)
        assert (users.user, users.group, users.mode) == ("root", "valkey", 0o640)
        assert secret("redis_password") not in users.content_string
    assert host.socket("tcp://127.0.0.1:6379").is_listening
    assert not host.socket("tcp://0.0.0.0:6379").is_listening
    assert [p.user for p in host.process.filter(comm="valkey-server")] == ["valkey"]
    assert not host.package("redis-server").is_installed


def test_nginx_configuration_has_no_warning(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr
    assert "http2 on;" in host.file(f"/etc/nginx/sites-enabled/{APP}.conf").content_string


TLS_HANDSHAKE = (
    "import socket, ssl\n"
    "context = ssl.create_default_context()\n"
    "context.check_hostname = False\n"
    "context.verify_mode = ssl.CERT_NONE\n"
    "context.set_alpn_protocols(['h2', 'http/1.1'])\n"
    "with socket.create_connection(('127.0.0.1', 443), timeout=5) as raw:\n"
    "    with context.wrap_socket(raw, server_hostname='localhost') as tls:\n"
    "        print(tls.version(), tls.selected_alpn_protocol())\n"
)


def test_the_tls_site_speaks_http2(host):
    assert python(host, TLS_HANDSHAKE).split() in (["TLSv1.3", "h2"], ["TLSv1.2", "h2"])


def test_plain_http_redirects_to_https(host):
    headers = host.check_output("python3 -c %s", (
        "import http.client\n"
        "c = http.client.HTTPConnection('127.0.0.1', 80, timeout=5)\n"
        "c.request('GET', '/admin/')\n"
        "r = c.getresponse()\n"
        "print(r.status, r.getheader('Location'))\n"))
    assert headers == "301 https://127.0.0.1/admin/"


def test_mariadb_is_11_8(mariadb_host):
    version = mariadb_host.check_output("mariadb -Nse 'SELECT VERSION()'")
    assert version.startswith("11.8."), version


def test_mariadb_root_logs_in_through_its_unix_socket(mariadb_host):
    assert mariadb_host.check_output("mariadb -Nse 'SELECT CURRENT_USER()'") == "root@localhost"


def mariadb_as_app(host, password: str):
    return host.run("MYSQL_PWD=%s mariadb -h 127.0.0.1 -u %s %s -Nse "
                    "'SELECT CURRENT_USER(), @@character_set_database, @@collation_database'",
                    password, APP, APP)


def test_the_app_user_logs_in_to_its_mariadb_database_with_its_password(mariadb_host):
    result = mariadb_as_app(mariadb_host, secret("db_password"))
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == [f"{APP}@127.0.0.1", "utf8mb4", "utf8mb4_unicode_ci"]
    assert mariadb_as_app(mariadb_host, "not-the-password").rc != 0
