"""What the console role must leave on its host: the console up as its own unprivileged user on
loopback, nginx with TLS in front, secrets private, and deploys that reach a target over SSH."""

import json
import os
import re
from pathlib import Path

import pytest

CONSOLE_USER = "slipway-console"
ROOT = "/srv/slipway-console"
UNIT = "slipway-console.service"
TEST_DIR = Path(os.environ["CONSOLE_TEST_DIR"])
# Polls of a run's status, one second apart: a bound on waiting, not a timing assertion.
POLLS = 300

REQUEST = r"""
import http.client, json, ssl, sys, urllib.parse
req = json.loads(sys.argv[1])
if req["https"]:
    context = ssl.create_default_context(cafile="/etc/nginx/tls/slipway-console.crt")
    connection = http.client.HTTPSConnection("127.0.0.1", 443, context=context, timeout=60)
else:
    connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=60)
headers, body = dict(req["headers"]), None
if req["json"] is not None:
    headers["Content-Type"], body = "application/json", json.dumps(req["json"])
if req["form"] is not None:
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    body = urllib.parse.urlencode(req["form"])
connection.request(req["method"], req["path"], body=body, headers=headers)
response = connection.getresponse()
print(json.dumps({"status": response.status, "headers": response.getheaders(),
                  "body": response.read().decode()}))
"""


def http(host, path, method="GET", token=None, json_body=None, form=None, cookie=None,
         https=True):
    """A request from the host itself through nginx (HTTPS, checked against the site's
    certificate), redirects not followed: status, headers (pairs, duplicates kept), body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if cookie:
        headers["Cookie"] = cookie
    request = {"path": path, "method": method, "headers": headers, "json": json_body,
               "form": form, "https": https}
    result = host.run("python3 -c %s %s", REQUEST, json.dumps(request))
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def header_values(response, name):
    return [value for key, value in response["headers"] if key.lower() == name.lower()]


@pytest.fixture(scope="module")
def token(host):
    return host.check_output("/usr/local/sbin/slipway-console token admin").strip()


WAIT = r"""
import json, sys, time, urllib.error, urllib.request
port, run_id, token, wanted, polls = sys.argv[1:6]
run = None
for _ in range(int(polls)):
    request = urllib.request.Request("http://127.0.0.1:%s/api/v1/deploy/status/%s" % (port, run_id),
                                     headers={"Authorization": "Bearer " + token})
    try:
        run = json.load(urllib.request.urlopen(request, timeout=60))
    except (OSError, ValueError):
        run = None  # the console may be starting
    if run and run["status"] in wanted.split(","):
        break
    time.sleep(1)
print(json.dumps(run))
"""


def wait_for_status(host, token, run_id, wanted):
    """The run once its status is one of wanted, polled from the host once a second."""
    result = host.run("python3 -c %s %s %s %s %s %s", WAIT, "8765", str(run_id), token,
                      ",".join(wanted), str(POLLS))
    assert result.rc == 0, result.stderr
    run = json.loads(result.stdout)
    assert run and run["status"] in wanted, f"run {run_id} is not {wanted} after {POLLS} s: {run}"
    return run


def test_console_runs_as_its_unprivileged_user_without_a_login_shell(host):
    service = host.service(UNIT)
    assert service.is_running
    assert service.is_enabled
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}")
    assert host.check_output(f"ps -o user= -p {main_pid}") == CONSOLE_USER
    assert host.user(CONSOLE_USER).shell == "/usr/sbin/nologin"


def test_console_listens_on_loopback_only(host):
    listeners = host.check_output("ss -ltnH 'sport = :8765'").splitlines()
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listeners}
    assert addresses == {"127.0.0.1"}, listeners


def test_code_and_configuration_are_not_writable_by_the_console(host):
    release = host.file(f"{ROOT}/current")
    assert release.is_symlink
    venv = host.file(f"{release.linked_to}/venv/lib")
    assert venv.user == "root"
    result = host.run(f"runuser -u {CONSOLE_USER} -- test -w {ROOT}/etc")
    assert result.rc != 0


def test_the_release_is_the_release_roles_recorded_with_its_wheelhouse_and_nothing_else(host):
    """The release role built it: its record, the collection under collections/, the wheels in
    shared/wheelhouse (slipway-tools built from the collection among them), and in the build
    cache only the archive of the wheelhouse the release uses."""
    release = host.file(f"{ROOT}/current").linked_to
    record = json.loads(host.file(f"{release}/.slipway-release.json").content_string)
    assert record["release_id"] == Path(release).name
    assert record["dependencies"] == "requirements"
    collection = f"{release}/collections/ansible_collections/slipway/django"
    assert host.file(f"{collection}/roles/console/files/requirements.txt").exists
    wheelhouse = host.file(record["wheelhouse"])
    assert wheelhouse.is_directory and wheelhouse.path.startswith(f"{ROOT}/shared/wheelhouse/")
    assert any(name.startswith("slipway_tools-") for name in wheelhouse.listdir())
    assert host.file(f"{ROOT}/shared/wheelhouse").listdir() == [Path(record["wheelhouse"]).name]
    archives = [name for name in host.file("/var/cache/slipway/console/wheelhouse").listdir()
                if name.endswith(".tar")]
    assert archives == [Path(record["wheelhouse"]).name + ".tar"]
    imports = host.run(f"{release}/venv/bin/python -c "
                       "'import ansible, ansible_runner, slipway.console'")
    assert imports.rc == 0, imports.stderr


def test_plain_http_redirects_to_https(host):
    response = http(host, "/login", https=False)
    assert response["status"] == 301
    assert header_values(response, "Location") == ["https://127.0.0.1/login"]


def test_nginx_configuration_has_no_warning(host):
    result = host.run("nginx -t")
    assert result.rc == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


ALPN = r"""
import socket, ssl
context = ssl.create_default_context(cafile="/etc/nginx/tls/slipway-console.crt")
context.set_alpn_protocols(["h2", "http/1.1"])
with socket.create_connection(("127.0.0.1", 443), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        print(tls.selected_alpn_protocol())
"""


def test_the_tls_site_speaks_http2(host):
    assert host.check_output("python3 -c %s", ALPN) == "h2"


def test_login_page_is_served_over_tls_with_security_headers_once(host):
    response = http(host, "/login")
    assert response["status"] == 200
    assert "<form" in response["body"]
    assert header_values(response, "X-Frame-Options") == ["DENY"]
    assert header_values(response, "X-Content-Type-Options") == ["nosniff"]
    assert len(header_values(response, "Content-Security-Policy")) == 1
    assert header_values(response, "Strict-Transport-Security")[0].startswith("max-age=")


def test_first_admin_logs_in_with_its_password_and_gets_a_secure_session_cookie(host):
    page = http(host, "/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page["body"]).group(1)
    login_cookie = header_values(page, "Set-Cookie")[0].split(";", 1)[0]
    password = (TEST_DIR / "admin-password").read_text().strip()
    response = http(host, "/login", "POST", cookie=login_cookie,
                    form={"name": "admin", "password": password, "csrf_token": csrf})
    assert response["status"] == 303
    session = [value for value in header_values(response, "Set-Cookie")
               if value.startswith("slipway_session=")]
    assert len(session) == 1 and "Secure" in session[0].split("; ")


def test_openapi_description_is_served_through_nginx(host):
    response = http(host, "/openapi.json")
    assert response["status"] == 200
    assert "/api/v1/deploy/trigger" in json.loads(response["body"])["paths"]


def test_api_refuses_an_unauthenticated_call(host):
    assert http(host, "/api/v1/deploy/history")["status"] == 401
    unknown = "0" * 43
    assert http(host, "/api/v1/deploy/history", token=unknown)["status"] == 401


def test_secrets_are_0600_and_owned_by_their_reader(host):
    secrets = {f"{ROOT}/etc/console.yml": CONSOLE_USER, f"{ROOT}/etc/console.env": "root",
               f"{ROOT}/etc/vault-password": CONSOLE_USER,
               f"{ROOT}/state/.ssh/slipway-console": CONSOLE_USER}
    listing = host.check_output("stat -c '%%n %%a %%U'" + " %s" * len(secrets), *secrets)
    assert listing.splitlines() == [f"{path} 600 {owner}" for path, owner in secrets.items()]


def test_history_store_url_reaches_the_console_through_its_environment_file(host):
    main_pid = host.check_output(f"systemctl show -P MainPID {UNIT}")
    environ = host.check_output(f"tr '\\0' '\\n' < /proc/{main_pid}/environ")
    assert f"SLIPWAY_HISTORY_DB={ROOT}/state/history.sqlite3" in environ.splitlines()


def test_deploy_through_the_api_reaches_the_target_over_ssh_with_the_vault(host, token):
    response = http(host, "/api/v1/deploy/trigger", "POST", token,
                    {"environment": "molecule", "description": "molecule scenario"})
    assert response["status"] == 201, response["body"]
    run = wait_for_status(host, token, json.loads(response["body"])["id"],
                          ("success", "failed", "interrupted", "cancelled"))
    assert run["status"] == "success", run
    greeting = host.file("/home/target/console-greeting")
    assert greeting.user == "target"
    assert greeting.content_string.strip() == "hello from the vault"


def test_live_log_stream_passes_through_nginx(host, token):
    runs = json.loads(http(host, "/api/v1/deploy/history?environment=molecule",
                           token=token)["body"])["runs"]
    response = http(host, f"/api/v1/deploy/logs/{runs[0]['id']}/stream", token=token)
    assert response["status"] == 200
    assert header_values(response, "Content-Type")[0].startswith("text/event-stream")
    assert "event: log" in response["body"]
    assert "event: end" in response["body"]


def app_logs(host, token, unit):
    response = http(host, f"/api/v1/environments/molecule/logs?unit={unit}&lines=50&since=1h",
                    token=token)
    assert response["status"] == 200, response["body"]
    return json.loads(response["body"])


def test_app_logs_show_each_unit_groups_journal_lines_read_on_the_app_host(host, token):
    web = app_logs(host, token, "web")
    assert web["rc"] == 0, web
    assert [entry["host"] for entry in web["hosts"]] == ["target"]
    assert web["hosts"][0]["error"] is None, web
    assert "slipway-logs web blue is up" in web["hosts"][0]["output"]
    assert "slipway-logs worker" not in web["hosts"][0]["output"]

    processes = app_logs(host, token, "processes")["hosts"][0]
    assert "slipway-logs worker is up" in processes["output"], processes
    assert "slipway-logs web" not in processes["output"]


def test_app_logs_refuse_a_unit_outside_the_fixed_list(host, token):
    response = http(host, "/api/v1/environments/molecule/logs?unit=ssh", token=token)
    assert response["status"] == 422, response
    response = http(host, "/api/v1/environments/molecule/logs?unit=web&lines=501", token=token)
    assert response["status"] == 422, response


def test_unit_is_hardened_to_an_exposure_of_2_or_lower(host):
    output = host.check_output(f"systemd-analyze security {UNIT} --no-pager")
    verdict = output.strip().splitlines()[-1]
    print(f"\nsystemd-analyze security {UNIT}: {verdict}")
    score = float(verdict.split("level for", 1)[1].split(":", 1)[1].split()[0])
    assert score <= 2.0, verdict


def test_restart_during_a_run_stops_it_and_leaves_none_of_its_processes(host, token):
    response = http(host, "/api/v1/deploy/trigger", "POST", token,
                    {"environment": "molecule-slow"})
    assert response["status"] == 201, response["body"]
    run_id = json.loads(response["body"])["id"]
    started = host.run(f"for i in $(seq {POLLS}); do pgrep -u target -x sleep && exit 0; sleep 1; "
                       "done; exit 1")
    assert started.rc == 0, "the slow playbook never started its sleep on the target"
    old_pid = host.check_output(f"systemctl show -P MainPID {UNIT}")

    host.check_output(f"systemctl restart {UNIT}")

    assert host.check_output(f"systemctl show -P MainPID {UNIT}") != old_pid
    assert host.run(f"pgrep -u {CONSOLE_USER} -f slow.yml").rc == 1
    journal = host.check_output(f"journalctl -u {UNIT} -o cat --no-pager")
    assert "timed out" not in journal
    run = wait_for_status(host, token, run_id, ("interrupted", "cancelled", "failed", "success"))
    assert run["status"] == "interrupted", run
