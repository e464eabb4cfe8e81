"""Steps the update and restore scenarios share: real playbook runs against a scenario's host,
a bounded load generator on the container's published nginx port, what the host records about
its releases, and a sampler of every command line seen on the host while the playbooks run.

The scenarios' tests build a Scenario for their container and use its methods; the functions
that take testinfra's `host` read the app's state on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(PROJECT / ".cache" / "collections"))

from ansible_collections.slipway.django.plugins.modules import package_source  # noqa: E402
from loadgen import LoadGenerator  # noqa: E402

APP = "shop"
ROOT = f"/srv/{APP}"
# Bounds, not expectations: a playbook that hangs is killed, the load stops by itself.
RUN_TIMEOUT = 1800
LOAD_LIMIT = RUN_TIMEOUT + 60
# Steady traffic, not a stress test: the tests run beside other scenarios on a 2-core machine,
# and every request of the deploy's window is checked (the benchmarks measure latency). One
# request every 100 ms still covers every switch and restart; at 25/s the load's own CPU slowed
# the scenarios' deploys past their bounds under make test.
LOAD_RATE = 10.0
# A client's patience, nginx's own proxy_read_timeout (60 s): a request that waits in the
# socket's queue while gunicorn restarts on a loaded machine is slow, not failed (nginx would
# answer it); its latency is reported. Waits of up to 29 s were seen under make test's load.
CLIENT_TIMEOUT = 60.0
# The command line sampler (tests/testbed/proc_sampler.py) inside the container.
SAMPLER_DIR = "/root/proc-sampler"
SAMPLER_LIMIT = 3600


def podman(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check,
                          **kwargs)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


@dataclass
class Scenario:
    """One scenario's container, its ephemeral directory and the app versions prepare wrote."""

    container: str
    ephemeral: Path = field(default_factory=lambda: Path(
        os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")))

    @property
    def versions(self) -> Path:
        return self.ephemeral / "versions"

    def credential(self, name: str) -> str:
        """A secret the scenario's variables generate (ansible.builtin.password files)."""
        return (self.ephemeral / "credentials" / name).read_text().split()[0]

    def release_id(self, version: str) -> str:
        """The release id the deploy derives from a version's content."""
        tree = str(self.versions / version)
        files = package_source.walk_files(tree, ["__pycache__", "*.pyc"])
        return package_source.tree_digest(tree, files)[:12]

    def url(self, path: str) -> str:
        published = podman("port", self.container, "80/tcp").stdout.split()[0]
        return f"http://127.0.0.1:{published.rsplit(':', 1)[1]}{path}"

    def playbook(self, name: str, *extra: str) -> subprocess.CompletedProcess:
        command = ["ansible-playbook", "-i",
                   str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent),
                   str(PROJECT / "playbooks" / name), *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              cwd=PROJECT, check=False)

    def deploy(self, version: str, *extra: str) -> subprocess.CompletedProcess:
        return self.playbook("deploy.yml", "-e", f"app_source={self.versions / version}", *extra)

    def under_load(self, name: str, path: str,
                   *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        """Run a playbook while the load generator sends GET PATH; the run and the load's
        summary (also appended to loadgen-SCENARIO.jsonl in the ephemeral directory)."""
        load = LoadGenerator(self.url(path), rate=LOAD_RATE, duration=LOAD_LIMIT, workers=8,
                             timeout=CLIENT_TIMEOUT).start()
        started = time.monotonic()
        try:
            result = self.playbook(name, *extra)
        finally:
            summary = load.stop()
        label = f"{name} {' '.join(extra)}"
        summary["playbook_seconds"] = round(time.monotonic() - started, 1)
        scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "scenario")
        with (self.ephemeral / f"loadgen-{scenario}.jsonl").open("a") as log:
            log.write(json.dumps({"run": label, **summary}) + "\n")
        print(f"\n{label}: {summary['playbook_seconds']} s; sent {summary['sent']} ok "
              f"{summary['ok']} failed {summary['failed']} other {summary['other_status']} "
              f"maintenance {summary['maintenance']} at "
              f"{summary['achieved_rate']}/s; p95 {summary['latency_ms']['p95']} ms, max "
              f"{summary['latency_ms']['max']} ms; releases {summary['releases']}")
        return result, summary


class CommandLineSampler:
    """Records every distinct command line on the container, from start() to stop()."""

    out = f"{SAMPLER_DIR}/cmdlines.jsonl"
    stop_file = f"{SAMPLER_DIR}/stop"

    def __init__(self, container: str):
        self.container = container

    def start(self) -> CommandLineSampler:
        podman("exec", self.container, "rm", "-rf", SAMPLER_DIR)
        podman("exec", self.container, "mkdir", "-p", SAMPLER_DIR)
        podman("cp", str(PROJECT / "tests" / "testbed" / "proc_sampler.py"),
               f"{self.container}:{SAMPLER_DIR}/proc_sampler.py")
        podman("exec", "-d", self.container, "python3", f"{SAMPLER_DIR}/proc_sampler.py",
               self.out, "--stop-file", self.stop_file, "--max-seconds", str(SAMPLER_LIMIT))
        self.records()  # its first scan, so that nothing the tests run comes before it
        return self

    def records(self, done: bool = False) -> list[dict]:
        """What the sampler wrote, once it wrote anything (with done: once it wrote its end)."""
        deadline = time.monotonic() + 60
        while True:
            found = podman("exec", self.container, "sh", "-c",
                           f"cat {self.out} 2>/dev/null || true")
            records = [json.loads(line) for line in found.stdout.splitlines()]
            if records and (not done or records[-1].get("done")):
                return records
            assert time.monotonic() < deadline, f"the sampler wrote no {'end' if done else 'scan'}"
            time.sleep(0.2)

    def stop(self) -> list[dict]:
        podman("exec", self.container, "touch", self.stop_file)
        return self.records(done=True)

    def abandon(self) -> None:
        podman("exec", self.container, "touch", self.stop_file, check=False)


def command_lines_fixture(scenario: Scenario):
    """A module's autouse fixture: every command line seen on the scenario's host while the
    module's playbooks run (assign it to a name in the test module)."""

    @pytest.fixture(scope="module", autouse=True)
    def command_lines():
        sampler = CommandLineSampler(scenario.container).start()
        yield sampler
        sampler.abandon()

    return command_lines


def assert_no_secret_seen(host, scenario: Scenario, sampler: CommandLineSampler,
                          markers: dict[str, str]) -> None:
    """No secret of the app on any command line the sampler saw, while the processes named in
    markers ({what: a piece of its command line}), which get the secrets, were seen."""
    secrets = {"SECRET_KEY": scenario.credential("secret_key"),
               "database password": scenario.credential("db_password"),
               "Redis password": scenario.credential("redis_password"),
               "admin password": scenario.credential("shop-admin-password")}
    env = host.file(f"{ROOT}/shared/.env").content_string
    for name in ("SECRET_KEY", "database password", "Redis password"):
        assert secrets[name] in env, f"the {name} read here is not the one the app runs with"

    records = sampler.stop()

    assert records[-1]["stopped_by"] == "stop file", records[-1]
    seen = [" ".join(record["argv"]) for record in records if "argv" in record]
    for what, marker in markers.items():
        assert any(marker in line for line in seen), f"the sampler never saw {what} ({marker})"
    leaks = {name: [line.replace(value, f"<{name}>") for line in seen if value in line]
             for name, value in secrets.items()}
    assert leaks == {name: [] for name in secrets}
    # The admin password read here is the admin's (sent on stdin, like the deploy does).
    checked = podman("exec", "-i", scenario.container, f"{ROOT}/bin/manage", "shell",
                     "--verbosity", "0", "-c",
                     "import sys; from django.contrib.auth import authenticate; "
                     "print(authenticate(username='admin', password=sys.stdin.read().strip()) "
                     "is not None)", input=secrets["admin password"])
    assert checked.stdout.strip().splitlines()[-1] == "True", checked.stderr


def current(host) -> str:
    return Path(host.check_output(f"readlink {ROOT}/current")).name


def live_slot(host) -> str:
    """The web server's slot that nginx sends requests to (blue or green)."""
    return host.check_output(f"readlink {ROOT}/slots/live")


def web_unit(host) -> str:
    """The unit of the web server that serves now (APP@SLOT.service)."""
    return f"{APP}@{live_slot(host)}.service"


def assert_workers_overlapped(host, old_slot: str, new_slot: str) -> None:
    """The Celery worker of the slot that serves now started before the old slot's worker was
    told to finish (systemd's own journal lines, in the order it wrote them), and the old one is
    stopped."""
    old, new = f"{APP}-celery@{old_slot}.service", f"{APP}-celery@{new_slot}.service"
    lines = host.check_output(f"journalctl --no-pager -o cat -u {old} -u {new}").splitlines()
    started = [number for number, line in enumerate(lines) if line.startswith(f"Started {new}")]
    stopping = [number for number, line in enumerate(lines) if line.startswith(f"Stopping {old}")]
    assert started and stopping, lines[-20:]
    assert started[-1] < stopping[-1], lines[-20:]
    assert host.service(new).is_running and host.service(new).is_enabled
    assert not host.service(old).is_enabled
    # The deploy does not wait for the old worker's warm shutdown: it ends within its
    # stop_timeout (30 s), polled within a bound.
    for _attempt in range(90):
        if not host.service(old).is_running:
            break
        time.sleep(1)
    assert not host.service(old).is_running


def status(host, release: str) -> dict:
    return json.loads(host.file(f"{ROOT}/releases/{release}/.slipway-status.json").content_string)


def manage(host, code: str) -> str:
    result = host.run(f"{ROOT}/bin/manage shell --verbosity 0 -c {json.dumps(code)}")
    assert result.rc == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def tables(host) -> set[str]:
    return set(manage(host, "from django.db import connection; "
                      "print(' '.join(connection.introspection.table_names()))").split())


def line_name(host) -> str:
    return manage(host, "from production.models import ProductionLine; "
                        "print(ProductionLine.objects.get(code='L1').name)")


def add_line_one(host) -> None:
    manage(host, "from production.models import ProductionLine; "
                 "ProductionLine.objects.get_or_create(code='L1', defaults={'name': 'line one'})")


def applied(host) -> list[str]:
    return json.loads(manage(host, "import json; from django.db.migrations.recorder import "
                                   "MigrationRecorder; print(json.dumps(sorted(MigrationRecorder"
                                   ".Migration.objects.filter(app='production')"
                                   ".values_list('name', flat=True))))"))


def backups(host) -> list[dict]:
    return [json.loads(host.file(path).content_string) for path in
            host.check_output(f"find /var/backups/{APP} -maxdepth 1 -name '*.json'").split()]


def health_status(host) -> str:
    """/health/'s HTTP status through nginx, asked from the host itself."""
    health = host.run("python3 -c 'import urllib.request; "
                      "print(urllib.request.urlopen(\"http://127.0.0.1/health/\").status)'")
    return health.stdout.strip() or health.stderr


def lock_is_free(host) -> bool:
    return not host.file(f"/var/lib/slipway/{APP}/deploy.lock").exists


def assert_no_failed_request(summary: dict) -> None:
    assert summary["sent"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert summary["other_status"] == 0, summary["statuses"]
