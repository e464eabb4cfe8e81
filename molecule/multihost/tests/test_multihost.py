"""Two app hosts behind a load balancer, one database and cache host: what must hold, and a
deploy under load that drops no request."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import testinfra
from ansible_collections.slipway.django.plugins.modules import package_source
from loadgen import LoadGenerator

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
APP_HOSTS = ["slipway-mh-app1", "slipway-mh-app2"]
DB_HOST = "slipway-mh-db1"
BALANCER = "slipway-mh-lb1"
APP = "shop"
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "."))
VERSIONS = EPHEMERAL / "versions"

# The deploy run under load (a version written by prepare.yml) and the releases that may answer
# meanwhile. A rolling v1 -> v2 update changes both: DEPLOY_VERSION = "v2" and
# ANSWERING_VERSIONS = ("v1", "v2"), then checks that v2 answered last.
DEPLOY_VERSION = "v1"
ANSWERING_VERSIONS = ("v1",)
# What converge.yml deploys (molecule.yml's app_source).
CONVERGED_VERSION = "v1"
# Steady traffic, not a stress test (see tests/testbed/deploy_steps.py).
LOAD_RATE = 10.0
# A client's patience, nginx's own proxy_read_timeout (60 s): a request queued while a host
# restarts on a loaded machine is slow, not failed (nginx would answer it); its latency is
# reported.
CLIENT_TIMEOUT = 60.0
# Bounds, not expectations: the load stops at LOAD_LIMIT even if the deploy hangs.
DEPLOY_TIMEOUT = 1800
LOAD_LIMIT = DEPLOY_TIMEOUT + 60
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def release_id(version: str) -> str:
    """The release id the deploy derives from a version's content (package_source's digest)."""
    tree = str(VERSIONS / version)
    files = package_source.walk_files(tree, ["__pycache__", "*.pyc"])
    return package_source.tree_digest(tree, files)[:12]


def get_host(name: str):
    return testinfra.get_host(f"ansible://{name}",
                              ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@pytest.fixture(scope="module")
def app_hosts():
    return [get_host(name) for name in APP_HOSTS]


@pytest.fixture(scope="module")
def db_host():
    return get_host(DB_HOST)


@pytest.fixture(scope="module")
def balancer():
    return get_host(BALANCER)


def balancer_url(path: str) -> str:
    port = subprocess.run(["podman", "port", BALANCER, "80/tcp"], capture_output=True,
                          text=True, check=True).stdout.split()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}{path}"


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback only
        return response.status, response.read()


def deploy(version: str, *extra: str) -> subprocess.CompletedProcess:
    """playbooks/deploy.yml on the scenario's inventory, deploying VERSIONS/version."""
    command = ["ansible-playbook", "-i", str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
               str(PROJECT / "playbooks" / "deploy.yml"),
               "-e", f"app_source={VERSIONS / version}", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=DEPLOY_TIMEOUT,
                          cwd=PROJECT)


def live_slot(host) -> str:
    return host.check_output(f"readlink /srv/{APP}/slots/live")


def celery_unit(host) -> str:
    return f"{APP}-celery@{live_slot(host)}.service"


def access_log_lines(host) -> int:
    return int(host.check_output(f"grep -c 'GET /health/' /var/log/{APP}/gunicorn-access.log "
                                 "|| true") or 0)


@pytest.mark.parametrize("name", APP_HOSTS)
@pytest.mark.parametrize("unit", ["web.socket", "web.service", "celery", "nginx"])
def test_every_app_host_runs_the_app_and_its_nginx(app_hosts, name, unit):
    host = app_hosts[APP_HOSTS.index(name)]
    if unit.startswith("web."):  # the web server's units in the slot that serves
        unit = f"{APP}@{live_slot(host)}{unit[3:]}"
    if unit == "celery":  # Celery's worker in the slot that serves
        unit = celery_unit(host)
    assert host.service(unit).is_running
    assert host.service(unit).is_enabled


def test_celery_beat_runs_on_exactly_one_app_host(app_hosts):
    running = [name for name, host in zip(APP_HOSTS, app_hosts, strict=True)
               if host.service(f"{APP}-celerybeat.service").is_running]
    assert running == [APP_HOSTS[0]]
    assert not app_hosts[1].file(f"/etc/systemd/system/{APP}-celerybeat.service").exists


def test_balancer_spreads_health_checks_over_both_app_hosts(app_hosts):
    before = [access_log_lines(host) for host in app_hosts]
    answers = [get(balancer_url("/health/")) for _ in range(20)]
    after = [access_log_lines(host) for host in app_hosts]
    assert {status for status, _ in answers} == {200}
    assert {json.loads(body)["release"] for _, body in answers} == {release_id("v1")}
    served = [b - a for a, b in zip(before, after, strict=True)]
    assert all(count > 0 for count in served), served
    assert sum(served) == 20


def test_balancer_proxies_static_files_it_does_not_have(balancer):
    status, body = get(balancer_url("/static/admin/css/base.css"))
    assert status == 200 and body
    assert not balancer.file(f"/srv/{APP}").exists


def test_balancer_runs_only_nginx(balancer):
    assert balancer.service("nginx").is_running
    for package in ("postgresql-15", "redis-server", "python3-venv"):
        assert not balancer.package(package).is_installed


PG_STARTUP = (
    "import socket, struct\n"
    "params = b'user\\0" + APP + "\\0database\\0" + APP + "\\0\\0'\n"
    "message = struct.pack('!ii', 8 + len(params), 196608) + params\n"
    "with socket.create_connection(('" + DB_HOST + "', 5432), timeout=5) as s:\n"
    "    s.sendall(message)\n"
    "    print(s.recv(4096))\n"
)


def postgres_greeting(host) -> str:
    """What PostgreSQL on the database host answers host's startup message."""
    result = host.run(f"python3 -c {shlex.quote(PG_STARTUP)}")
    assert result.rc == 0, result.stderr
    return result.stdout


def test_postgresql_asks_app_hosts_for_a_password(app_hosts):
    for host in app_hosts:
        # 'R' + length + 10: SASL authentication (scram-sha-256) requested.
        assert postgres_greeting(host).startswith("b'R"), postgres_greeting(host)


def test_postgresql_refuses_the_balancer(balancer):
    greeting = postgres_greeting(balancer)
    assert greeting.startswith("b'E")
    assert "no pg_hba.conf entry" in greeting


REDIS_PING = (
    "import socket\n"
    "with socket.create_connection(('" + DB_HOST + "', 6379), timeout=5) as s:\n"
    "    s.sendall(b'PING\\r\\nAUTH not-the-password\\r\\n')\n"
    "    print(s.recv(4096))\n"
)


def test_redis_on_the_private_address_requires_its_password(app_hosts, db_host):
    result = app_hosts[0].run(f"python3 -c {shlex.quote(REDIS_PING)}")
    assert result.rc == 0, result.stderr
    assert "-NOAUTH" in result.stdout
    assert "-WRONGPASS" in result.stdout
    address = db_host.ansible("setup")["ansible_facts"]["ansible_default_ipv4"]["address"]
    assert db_host.socket(f"tcp://{address}:6379").is_listening
    assert not db_host.socket("tcp://0.0.0.0:6379").is_listening


def deploy_with_load(label: str, version: str, *extra: str):
    """Deploy VERSIONS/version while the balancer takes LOAD_RATE requests/s; the load's
    summary is kept as loadgen-LABEL.json and printed: (playbook result, load summary)."""
    load = LoadGenerator(balancer_url("/health/"), rate=LOAD_RATE, duration=LOAD_LIMIT,
                         workers=8, timeout=CLIENT_TIMEOUT).start()
    started = time.monotonic()
    try:
        result = deploy(version, *extra)
    finally:
        summary = load.stop()
    (EPHEMERAL / f"loadgen-{label}.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{label} ({version}) under load: {time.monotonic() - started:.0f} s; load: "
          f"sent {summary['sent']} ok {summary['ok']} failed {summary['failed']} "
          f"other {summary['other_status']} at {summary['achieved_rate']}/s, "
          f"p50 {summary['latency_ms']['p50']} ms p95 {summary['latency_ms']['p95']} ms "
          f"max {summary['latency_ms']['max']} ms; releases {summary['releases']}")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    return result, summary


@pytest.fixture(scope="module")
def deploy_under_load():
    """The deploy of DEPLOY_VERSION under load: (playbook result, load summary)."""
    return deploy_with_load("deploy", DEPLOY_VERSION)


def tasks_around(deploy_output: str, wall_time: str) -> str:
    """The deploy's task headers (profile_tasks stamps them) in the minute of wall_time."""
    minute = wall_time.replace("T", " ")[:16]
    stamp = re.compile(r"\w+ \d+ \w+ (\d{4}) +(\d\d:\d\d):\d\d")
    lines = ANSI.sub("", deploy_output).splitlines()
    picked = [f"{lines[n - 1].strip()} {line.strip()}" for n, line in enumerate(lines)
              if (match := stamp.search(line)) and match.group(2) == minute[11:16]]
    return "\n".join(picked)


def test_deploy_under_load_drops_no_request(deploy_under_load):
    result, summary = deploy_under_load
    assert summary["sent"] > 0
    assert summary["failed"] == 0, (summary["failures"][:5], tasks_around(
        result.stdout, summary["failures"][0]["wall_time"]) if summary["failures"] else "")
    assert summary["other_status"] == 0, summary["statuses"]
    assert set(summary["releases"]) <= {release_id(version) for version in ANSWERING_VERSIONS}
    assert release_id(DEPLOY_VERSION) in summary["releases"]


def test_second_deploy_of_the_converged_release_changes_nothing(deploy_under_load):
    """This scenario's idempotence check: the deploy under load is its second converge (with
    another DEPLOY_VERSION, idempotence needs a run of its own: molecule's idempotence step)."""
    assert DEPLOY_VERSION == CONVERGED_VERSION
    result, _ = deploy_under_load
    recap = dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", ANSI.sub("", result.stdout),
                            re.MULTILINE))
    assert recap == dict.fromkeys(APP_HOSTS + [DB_HOST, BALANCER], "0")


def test_rolling_update_to_v2_under_load_drops_no_request(app_hosts, db_host,
                                                          deploy_under_load):
    """v1 -> v2 host by host through the balancer: migrations once, before the first switch."""
    v1, v2 = release_id("v1"), release_id("v2")
    result, summary = deploy_with_load("rolling", "v2", "-e", '{"app_rolling_batches": [1]}')
    assert summary["failed"] == 0, summary["failures"][:5]
    assert summary["other_status"] == 0, summary["statuses"]
    assert set(summary["releases"]) <= {v1, v2}
    assert summary["releases"][v2]["last"] >= summary["releases"][v1]["last"]
    for host in app_hosts:
        assert Path(host.check_output(f"readlink /srv/{APP}/current")).name == v2
        record = json.loads(host.file(f"/srv/{APP}/releases/{v2}/.slipway-status.json")
                            .content_string)
        assert record["status"] == "succeeded" and record["previous"] == v1
    # The switch went host by host: app1's batch ran (and passed its gate) before app2's.
    output = ANSI.sub("", result.stdout)
    first = output.index("Switch the app hosts to the release, batch by batch")
    second = output.index("Switch the app hosts to the release, batch by batch", first + 1)
    assert "slipway-mh-app1" in output[first:second] and "slipway-mh-app2" not in output[
        first:second]
    # One backup, on the database host, before the one migration run.
    backups = [json.loads(db_host.file(path).content_string) for path in db_host.check_output(
        f"find /var/backups/{APP} -maxdepth 1 -name '*.json'").split()]
    assert [backup["metadata"]["from_release"] for backup in backups
            if backup["metadata"].get("to_release") == v2] == [v1]
    # (Task headers only: profile_tasks' summary of the slowest tasks may name it again.)
    migrate = ("TASK [slipway.django.app : Repair the migration history where the schema proves "
               "it, then migrate]")
    assert output.count(migrate) == 1
    ran = output[output.index(migrate):].split("\nTASK [", 1)[0]
    assert len(re.findall(r"^(ok|changed): \[", ran, re.MULTILINE)) == 1, ran
    beats = [host.service(f"{APP}-celerybeat.service").is_running for host in app_hosts]
    assert beats.count(True) == 1


# The process of app_processes in molecule.yml: two instances, pinned to app2.
def ticker_units(host) -> list[str]:
    """The ticker's two instances in the slot that serves."""
    return [f"{APP}-ticker@{live_slot(host)}-{number}.service" for number in (1, 2)]



def ticker_state(host) -> dict[str, str]:
    """Each running ticker instance: the release it runs in (its cwd) and the virtualenv it
    wrote from (sys.prefix, in a file named for its pid)."""
    state = {}
    for unit in ticker_units(host):
        pid = host.check_output(f"systemctl show --property MainPID --value {unit}")
        assert pid not in ("", "0"), f"{unit} has no main process"
        cwd = host.check_output(f"readlink /proc/{pid}/cwd")
        prefix = host.file(f"/var/lib/{APP}-ticker/ticker-{pid}").content_string
        state[unit] = {"pid": pid, "release": Path(cwd).name, "prefix": prefix}
    return state


def test_a_process_runs_on_its_pinned_host_only(app_hosts):
    app1, app2 = app_hosts
    for unit in ticker_units(app2):
        assert app2.service(unit).is_running and app2.service(unit).is_enabled
        pid = app2.check_output(f"systemctl show --property MainPID --value {unit}")
        assert app2.file(f"/proc/{pid}").user == APP
    assert app2.file(f"/etc/systemd/system/{APP}-ticker@.service").exists
    assert not app1.file(f"/etc/systemd/system/{APP}-ticker@.service").exists
    assert app1.check_output(f"systemctl list-units --all --no-legend '{APP}-ticker*'") == ""


def test_a_process_runs_in_the_release_with_its_virtualenv(app_hosts):
    current = Path(app_hosts[1].check_output(f"readlink /srv/{APP}/current")).name
    for state in ticker_state(app_hosts[1]).values():
        assert state["release"] == current
        assert state["prefix"] == f"/srv/{APP}/releases/{current}/venv"


def test_processes_run_the_new_release_after_the_update(app_hosts, deploy_under_load):
    """After the rolling update to v2 (the test above): restarted on the switch, in v2."""
    v2 = release_id("v2")
    if Path(app_hosts[1].check_output(f"readlink /srv/{APP}/current")).name != v2:
        pytest.skip("the rolling update to v2 did not run")
    for unit, state in ticker_state(app_hosts[1]).items():
        assert state["release"] == v2, unit
        assert state["prefix"] == f"/srv/{APP}/releases/{v2}/venv", unit
    # The instances that ran v1 wrote their files too: they were stopped, not reused.
    prefixes = {app_hosts[1].file(path).content_string for path in app_hosts[1].check_output(
        f"find /var/lib/{APP}-ticker -name 'ticker-*'").split()}
    assert f"/srv/{APP}/releases/{release_id('v1')}/venv" in prefixes
    # Celery runs on the new release too.
    for host in app_hosts:
        pid = host.check_output(f"systemctl show --property MainPID --value {celery_unit(host)}")
        assert Path(host.check_output(f"readlink /proc/{pid}/cwd")).name == v2


def broken_pages_version() -> str:
    """v2 whose /admin/login/ answers 500 while /health/ still answers 200."""
    name = "v2-broken-pages"
    target = VERSIONS / name
    if not target.exists():
        shutil.copytree(VERSIONS / "v2", target)
        urls = target / "config" / "urls.py"
        urls.write_text(urls.read_text().replace(
            "urlpatterns = [",
            'def broken(request):\n    raise RuntimeError("a page that fails")\n\n\n'
            'urlpatterns = [\n    path("admin/login/", broken),', 1))
    return name


def test_a_release_whose_pages_fail_is_refused_and_switched_back(app_hosts, deploy_under_load):
    """/health/ answers 200, /admin/login/ 500: the default gate refuses it on the first host,
    which runs the release it ran before, and the rollout stops."""
    before = [Path(host.check_output(f"readlink /srv/{APP}/current")).name for host in app_hosts]
    broken = release_id(broken_pages_version())
    result = deploy(broken_pages_version(), "-e", '{"app_rolling_batches": [1]}',
                    "-e", "app_health_retries=3")
    # ansible-core 2.19 reports failed tasks on stderr.
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0, output[-3000:]
    assert "/admin/login/ answered status 500, expected a status below 500" in output
    after = [Path(host.check_output(f"readlink /srv/{APP}/current")).name for host in app_hosts]
    assert after == before and broken not in after
    record = json.loads(app_hosts[0].file(f"/srv/{APP}/releases/{broken}/.slipway-status.json")
                        .content_string)
    assert record["status"] == "failed"
    # The release that ran before answers again, pages and health.
    assert get(balancer_url("/admin/login/"))[0] == 200
    answers = {json.loads(get(balancer_url("/health/"))[1])["release"] for _ in range(6)}
    assert answers == set(before)
    for unit in ticker_units(app_hosts[1]):
        assert app_hosts[1].service(unit).is_running


def test_a_process_removed_from_the_list_is_stopped_and_its_unit_removed(app_hosts,
                                                                        deploy_under_load):
    current = Path(app_hosts[1].check_output(f"readlink /srv/{APP}/current")).name
    version = next(version for version in ("v1", "v2") if release_id(version) == current)
    result = deploy(version, "-e", '{"app_processes": []}')
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    app2 = app_hosts[1]
    assert not app2.file(f"/etc/systemd/system/{APP}-ticker@.service").exists
    assert app2.run(f"find /etc/systemd/system -name '{APP}-ticker*'").stdout.strip() == ""
    for unit in [f"{APP}-ticker@{slot}-{number}.service" for slot in ("blue", "green")
                 for number in (1, 2)]:
        assert not app2.service(unit).is_running
    assert app2.check_output(f"systemctl list-units --all --no-legend '{APP}-ticker*'") == ""
    # Celery's units stay (they are entries of their own).
    for host in app_hosts:
        assert host.service(celery_unit(host)).is_running
    assert app_hosts[0].service(f"{APP}-celerybeat.service").is_running
