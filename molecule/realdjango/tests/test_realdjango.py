"""A Django project nobody here wrote, deployed unchanged (issue 13).

prepare.yml generates it with tests/testbed/real_django_project.py: `startproject uptime` of
Django 5.2 LTS with django-environ, django-compressor (offline), a STATIC_ROOT hard-coded inside
the project, a custom user model that logs in by email and the management command `sendalerts`,
which the inventory runs as a process (app_processes). Converge deployed v1 with no health
settings: the default gate had to fit a project without /health/.

The tests run in this order: what v1 serves; an update to v2 with deploy.yml (new page, new
migration, the process restarted in the new release) and a rerun that changes nothing; no
deploy printed a warning; and a release whose pages answer 500 while its database check passes,
which the default gate refuses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

APP = "uptime"
ROOT = f"/srv/{APP}"
ADMIN_EMAIL = "admin@uptime.example"
def process_unit(host) -> str:
    """sendalerts' unit in the web server's slot that serves (an app process overlaps)."""
    return f"{APP}-sendalerts@{host.check_output(f'readlink /srv/{APP}/slots/live')}.service"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
SOURCES = EPHEMERAL / "realdjango"
# Every deploy of the scenario logs here (molecule.yml), the tests' own too.
LOG = EPHEMERAL / "ansible.log"
FACTS = json.loads((SOURCES / "realdjango.json").read_text()) if SOURCES.exists() else {}
DEPLOY_PLAY = "PLAY [Prepare the release on every app host"
# Bounds, not expectations: a playbook that hangs is killed; a restarted process gets this long
# to write its first heartbeat.
RUN_TIMEOUT = 1800
HEARTBEAT_WAIT = 30
CSS_LINK = re.compile(r'<link rel="stylesheet" href="(/static/CACHE/css/output\.[0-9a-f]+\.css)"')
JS_SCRIPT = re.compile(r'<script src="(/static/CACHE/js/output\.[0-9a-f]+\.js)"')
REQUEST = (
    "import http.cookiejar, sys, urllib.parse, urllib.request, urllib.error\n"
    "opener = urllib.request.build_opener(\n"
    "    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))\n"
    "def get(path, data=None):\n"
    "    request = urllib.request.Request('http://127.0.0.1' + path, data=data)\n"
    "    try:\n"
    "        with opener.open(request, timeout=10) as answer:\n"
    "            return answer.status, answer.url, dict(answer.headers), answer.read().decode()\n"
    "    except urllib.error.HTTPError as error:\n"
    "        return error.code, error.url, dict(error.headers), error.read().decode()\n"
)


def fetch(host, path: str) -> dict:
    """GET http://127.0.0.1PATH on the host, through nginx (redirects followed)."""
    code = REQUEST + (
        "import json\n"
        "status, url, headers, body = get(sys.argv[1])\n"
        "print(json.dumps({'status': status, 'url': url, 'headers': headers, 'body': body}))\n")
    return json.loads(host.check_output("python3 -c %s %s", code, path))


def deploy(*extra: str) -> subprocess.CompletedProcess:
    """deploy.yml on the scenario's inventory, whole, as its user runs it."""
    command = ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
               str(PROJECT / "playbooks" / "deploy.yml"), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=PROJECT, env={**os.environ, "ANSIBLE_LOG_PATH": str(LOG)})


def plain(result: subprocess.CompletedProcess) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # molecule forces colours


def warnings_in(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if "[WARNING]" in line or "[DEPRECATION WARNING]" in line]


def changed_counts(result: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    return re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain(result), re.MULTILINE)


def current_release(host) -> str:
    return host.check_output(f"readlink -f {ROOT}/current")


def postgres_query(host, sql: str) -> str:
    return host.check_output("runuser -u postgres -- psql -d %s -Atc %s", APP, sql)


def home_page(host) -> dict:
    """The home page, its compressed CSS and JS (through nginx) and the CSS's path."""
    page = fetch(host, "/")
    assert page["status"] == 200, page["body"][:2000]
    css_link = CSS_LINK.search(page["body"])
    js_link = JS_SCRIPT.search(page["body"])
    assert css_link and js_link, page["body"]
    return {"page": page, "css_path": css_link.group(1), "css": fetch(host, css_link.group(1)),
            "js": fetch(host, js_link.group(1))}


def process_state(host) -> dict:
    """The process unit: its state, its main process's directory and command, and whether the
    sendalerts loop that last wrote its heartbeat is one of the unit's own processes (its
    cgroup, read from /proc: the host's cgroup tree is not the container's)."""
    name = process_unit(host)
    unit = host.service(name)
    main_pid = host.check_output(f"systemctl show --property MainPID --value {name}")
    heartbeat_pid = postgres_query(
        host, "SELECT pid FROM monitor_heartbeat WHERE worker = 'sendalerts'")
    cgroups = host.run(f"cat /proc/{heartbeat_pid or 'none'}/cgroup").stdout.splitlines()
    return {
        "running": unit.is_running,
        "enabled": unit.is_enabled,
        "cwd": host.check_output(f"readlink /proc/{main_pid}/cwd"),
        "cmdline": host.file(f"/proc/{main_pid}/cmdline").content_string.replace("\0", " "),
        "heartbeat_pid": heartbeat_pid,
        "heartbeat_in_unit": any(line.endswith(f"/{name}") for line in cgroups),
    }


def process_state_settled(host) -> dict:
    """process_state, once the unit's loop has written a heartbeat (bounded wait)."""
    deadline = time.monotonic() + HEARTBEAT_WAIT
    state = process_state(host)
    while not state["heartbeat_in_unit"] and time.monotonic() < deadline:
        time.sleep(1)
        state = process_state(host)
    return state


def assert_runs_in(state: dict, release: str) -> None:
    assert state["running"] and state["enabled"], state
    assert state["cwd"] == release, state
    assert "manage.py sendalerts" in state["cmdline"], state
    assert state["heartbeat_in_unit"], state


@pytest.fixture(scope="module")
def v1(host) -> dict:
    return {"release": current_release(host), "home": home_page(host)}


def test_the_home_page_answers_through_nginx_with_the_offline_compressed_css(host, v1):
    page = v1["home"]["page"]
    assert f"<h1>{FACTS['headings']['v1']}</h1>" in page["body"]
    css = v1["home"]["css"]
    assert css["status"] == 200
    assert css["headers"]["Content-Type"] == "text/css"
    assert ".checks .down{color:#b00020}" in css["body"]
    assert v1["home"]["js"]["status"] == 200
    assert "js-ready" in v1["home"]["js"]["body"]


def test_static_files_are_collected_where_the_projects_static_root_says(host, v1):
    collected = f"{v1['release']}/static-collected"
    assert host.file(f"{collected}{v1['home']['css_path'].removeprefix('/static')}").is_file
    admin_css = fetch(host, "/static/admin/css/base.css")
    assert admin_css["status"] == 200
    assert admin_css["body"] == host.file(f"{collected}/admin/css/base.css").content_string


def test_the_database_status_page_answers(host):
    status = fetch(host, "/status/")
    assert status["status"] == 200
    assert json.loads(status["body"])["status"] == "ok"


def test_the_admin_login_page_asks_for_an_email_address(host):
    page = fetch(host, "/admin/login/")
    assert page["status"] == 200
    assert "Email address" in page["body"]


def test_the_admin_logs_in_by_email_with_the_password_slipway_made(host):
    password = (EPHEMERAL / "credentials" / f"{APP}-admin-password").read_text().split()[0]
    code = REQUEST + (
        "import re\n"
        "status, url, headers, body = get('/admin/login/')\n"
        "token = re.search(r'name=\"csrfmiddlewaretoken\" value=\"([^\"]+)\"', body).group(1)\n"
        "form = urllib.parse.urlencode({'csrfmiddlewaretoken': token, 'username': sys.argv[1],\n"
        "                               'password': sys.stdin.read(), 'next': '/admin/'})\n"
        "status, url, headers, body = get('/admin/login/', form.encode())\n"
        "print(status, url, 'Site administration' in body)\n")
    result = host.run("printf %%s %s | python3 -c %s %s", password, code, ADMIN_EMAIL)
    assert result.rc == 0, result.stderr
    assert result.stdout.split() == ["200", "http://127.0.0.1/admin/", "True"]


def test_the_process_unit_runs_the_command_in_the_current_release(host, v1):
    assert_runs_in(process_state_settled(host), v1["release"])


def test_the_app_runs_without_gunicorn_in_its_requirements(host, v1):
    requirements = host.file(f"{v1['release']}/requirements.txt").content_string.lower()
    assert "gunicorn" not in requirements
    live = host.check_output(f"readlink /srv/{APP}/slots/live")
    assert host.service(f"{APP}@{live}.service").is_running


@pytest.fixture(scope="module")
def update(host, v1) -> dict:
    """deploy.yml of version 2 (a new migration, a new page and CSS)."""
    result = deploy("-e", f"app_source={SOURCES / 'v2'}")
    assert result.returncode == 0, plain(result)[-5000:]
    return {"result": result, "release": current_release(host)}


def test_an_update_serves_the_new_page_and_its_new_compressed_css(host, v1, update):
    assert update["release"] != v1["release"]
    home = home_page(host)
    assert f"<h1>{FACTS['headings']['v2']}</h1>" in home["page"]["body"]
    assert FACTS["headings"]["v1"] not in home["page"]["body"]
    assert home["css_path"] != v1["home"]["css_path"]
    assert home["css"]["status"] == 200
    assert ".checks small{color:#555}" in home["css"]["body"]
    assert fetch(host, "/admin/login/")["status"] == 200


def test_an_update_applies_the_new_migration(host, update):
    applied = postgres_query(host, "SELECT name FROM django_migrations WHERE app = 'monitor'")
    assert FACTS["v2_migration"] in applied.split()


def test_after_an_update_the_process_runs_the_new_release(host, update):
    assert_runs_in(process_state_settled(host), update["release"])


def test_an_update_prints_no_warning(update):
    assert warnings_in(plain(update["result"])) == []


def test_a_rerun_of_the_update_changes_nothing_and_prints_no_warning(host, update):
    result = deploy("-e", f"app_source={SOURCES / 'v2'}")
    assert result.returncode == 0, plain(result)[-5000:]
    recap = changed_counts(result)
    assert recap and all(changed == "0" for _, changed in recap), recap
    assert warnings_in(plain(result)) == []
    assert current_release(host) == update["release"]


def test_no_deploy_of_the_scenario_printed_a_warning(update):
    """Converge and the updates above, from the log they all write (the rerun of the update
    is the idempotence check: test_a_rerun_of_the_update_changes_nothing...)."""
    runs: dict[str, list[str]] = {}
    for line in LOG.read_text().splitlines():
        found = re.search(r" p=(\d+) ", line)
        if found:
            runs.setdefault(found.group(1), []).append(line)
    deploys = {pid: lines for pid, lines in runs.items()
               if any(DEPLOY_PLAY in line for line in lines)}
    # converge, the update and its rerun
    assert len(deploys) >= 3, sorted(runs)
    assert {pid: warnings_in("\n".join(lines)) for pid, lines in deploys.items()} == {
        pid: [] for pid in deploys}


def test_a_release_whose_pages_answer_500_fails_the_default_gate(host, update):
    assert json.loads(fetch(host, "/status/")["body"])["status"] == "ok"
    releases_before = set(host.check_output(f"ls {ROOT}/releases").split())
    result = deploy("-e", f"app_source={SOURCES / 'broken'}")
    text = plain(result)
    assert result.returncode != 0, text[-5000:]
    # The broken release was built (its check, compress and migrations pass) and started in
    # the other slot, where the gate refused it: nginx never sent it a request.
    assert set(host.check_output(f"ls {ROOT}/releases").split()) - releases_before, text[-5000:]
    assert "slot's socket, before the switch" in text, text[-5000:]
    assert (f"It never received a request: release {Path(update['release']).name} served "
            "throughout") in text, text[-5000:]
    assert current_release(host) == update["release"]
    home = fetch(host, "/")
    assert home["status"] == 200
    assert f"<h1>{FACTS['headings']['v2']}</h1>" in home["body"]
    assert_runs_in(process_state_settled(host), update["release"])


HOOK_FILES = {
    "record.yml": """\
- name: Record the release's facts at this stage
  ansible.builtin.copy:
    content: "{{ app_release | to_nice_json }}"
    dest: "/root/slipway-hooks/{{ app_release.stage }}.json"
    mode: "0600"
""",
    "manage.yml": """\
- name: Run the release's manage.py as the app user
  ansible.builtin.command: "{{ app_release.manage }} showmigrations monitor"
  register: hook_manage
  changed_when: false

- name: Keep what it printed
  ansible.builtin.copy:
    content: "{{ hook_manage.stdout }}"
    dest: /root/slipway-hooks/manage.txt
    mode: "0600"
""",
    "fail.yml": """\
- name: A smoke test of the switched release that fails
  ansible.builtin.fail:
    msg: the smoke test after the switch failed
""",
}


def hooked_source(name: str) -> Path:
    """A copy of v2 with one new file: a new release of the same code."""
    source = EPHEMERAL / "hooked" / name
    if not source.exists():
        shutil.copytree(SOURCES / "v2", source)
        (source / "hook_marker.py").write_text(f"# release {name}\n")
    return source


@pytest.fixture(scope="module")
def hooks() -> Path:
    directory = EPHEMERAL / "hooks"
    directory.mkdir(exist_ok=True)
    for name, text in HOOK_FILES.items():
        (directory / name).write_text(text)
    return directory


def hook_facts(host, stage: str) -> dict:
    return json.loads(host.check_output(f"cat /root/slipway-hooks/{stage}.json"))


def test_hooks_run_at_their_stages_with_the_release_facts(host, update, hooks):
    host.run("rm -rf /root/slipway-hooks && mkdir -m 0700 /root/slipway-hooks")
    stages = ["before_build", "after_build", "before_migrate", "after_migrate", "before_switch",
              "after_switch"]
    given = {stage: str(hooks / "record.yml") for stage in stages}
    given["after_build"] = [str(hooks / "record.yml"), str(hooks / "manage.yml")]
    result = deploy("-e", f"app_source={hooked_source('a')}",
                    "-e", json.dumps({"app_hooks": given}))
    assert result.returncode == 0, plain(result)[-5000:]
    release = current_release(host)
    assert release != update["release"]
    for stage in stages:
        facts = hook_facts(host, stage)
        assert facts["stage"] == stage
        assert (facts["id"], facts["path"], facts["serving"]) == (
            Path(release).name, release, Path(release).name)
        assert facts["previous"] == Path(update["release"]).name
        assert (facts["app"], facts["root"], facts["user"]) == (APP, ROOT, APP)
    # The release's manage.py, as the app user with its environment, before the migrations.
    assert FACTS["v2_migration"] in host.check_output("cat /root/slipway-hooks/manage.txt")
    assert fetch(host, "/")["status"] == 200


def test_a_failing_hook_after_the_switch_switches_back_and_runs_the_rollback_hooks(host, hooks):
    serving = current_release(host)
    host.run("rm -rf /root/slipway-hooks && mkdir -m 0700 /root/slipway-hooks")
    result = deploy("-e", f"app_source={hooked_source('b')}", "-e", json.dumps(
        {"app_hooks": {"after_switch": str(hooks / "fail.yml"),
                       "after_rollback": str(hooks / "record.yml")}}))
    text = plain(result)
    assert result.returncode != 0, text[-5000:]
    assert "the smoke test after the switch failed" in text
    assert f"Switched back to release {Path(serving).name}, which answers healthy" in text
    assert current_release(host) == serving
    facts = hook_facts(host, "after_rollback")
    assert facts["serving"] == Path(serving).name and facts["id"] != Path(serving).name
    home = fetch(host, "/")
    assert home["status"] == 200
    assert f"<h1>{FACTS['headings']['v2']}</h1>" in home["body"]
    assert_runs_in(process_state_settled(host), serving)


def test_hooks_naming_an_unknown_stage_or_a_missing_file_are_refused_before_any_change(host):
    serving = current_release(host)
    for hooks, message in (
            ({"after_deploy": "x.yml"}, "app_hooks: unknown stages after_deploy"),
            ({"before_build": "/nonexistent/hook.yml"},
             "app_hooks.before_build: /nonexistent/hook.yml is not a file on the controller")):
        result = deploy("-e", f"app_source={hooked_source('c')}",
                        "-e", json.dumps({"app_hooks": hooks}))
        text = plain(result)
        assert result.returncode != 0 and message in " ".join(text.split()), text[-3000:]
        assert "PLAY [Provision the database]" not in text
        assert current_release(host) == serving
