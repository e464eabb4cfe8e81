"""A real console for the tests: `slipway-console serve` in a subprocess on a free loopback
port, a throw-away SQLite history store, local inventories and the small playbooks beside this
file; and /proc read independently of the console's own code."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
sys.path.insert(0, str(ROOT / "src"))

from slipway.history.store import HistoryStore  # noqa: E402

PASSWORD = "correct horse battery staple"
# The allow-lists of one-off commands (YAML lines of an environment's `commands:`); the
# template in `note` must reach the playbook as text.
COMMANDS = {
    "staging": (
        "commands:",
        "  - {name: backfill_po, command: 'backfill_po --days 7 --limit 10', dry_run: true}",
        "  - {name: clearsessions, command: clearsessions}",
        "  - name: note",
        "    command: >-",
        "      backfill_po --note \"{{ lookup('pipe', 'touch${IFS}MARKER') }}\"",
    ),
    "production": (
        "commands:",
        "  - {name: backfill_po, command: 'backfill_po --days 7 --limit 10', dry_run: true}",
    ),
}
FINAL = ("success", "failed", "cancelled", "interrupted")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Site:
    """One console with its configuration, stores, users and playbook output directory."""

    def __init__(self, root: Path, grace: float = 10.0,
                 more: dict[str, tuple[str, ...]] | None = None,
                 top: tuple[str, ...] = (), environ: dict[str, str] | None = None,
                 host_vars: dict[str, dict] | None = None) -> None:
        """``more``: more YAML lines of an environment; ``top``: more top-level lines of
        the configuration; ``environ``: more environment variables of the console;
        ``host_vars``: more variables of an environment's inventory host."""
        self.root = root
        self.environ = dict(environ or {})
        more = dict(more or {})
        self.output = root / "out"
        self.output.mkdir(parents=True)
        self.store_url = str(root / "history.sqlite3")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.tokens: dict[str, str] = {}
        self.config = root / "console.yml"
        # Created if Ansible ever rendered the template in the `note` command.
        self.marker = root / "PWNED-command"
        (root / "broken.yml").write_text("- name: Broken\n  hosts: app\n  tasks: [\n")
        environments = {
            "staging": ({}, {}),
            "production": ({}, {"requires_approval": "true"}),
            "slow": ({"console_test_sleep": 300}, {}),
            "paced": ({"console_test_lines": 5, "console_test_line_pause": 1}, {}),
            "phased": ({"console_test_phase_pause": 1}, {}),
            "stubborn": ({"console_test_sleep": 300, "console_test_ignore_term": True}, {}),
            "broken": ({}, {"deploy_playbook": str(root / "broken.yml")}),
        }
        lines = [f"history_db: {self.store_url}", f"ansible_config: {ROOT / 'ansible.cfg'}",
                 f"cancel_grace_seconds: {grace}", "environments:"]
        for name, (variables, settings) in environments.items():
            self._inventory(name, {**variables, **(host_vars or {}).get(name, {})})
            lines += [f"  {name}:", f"    inventory: inventories/{name}",
                      f"    deploy_playbook: {PLAYBOOKS / 'deploy.yml'}",
                      f"    rollback_playbook: {PLAYBOOKS / 'rollback.yml'}",
                      f"    unlock_playbook: {PLAYBOOKS / 'unlock.yml'}",
                      f"    manage_playbook: {PLAYBOOKS / 'manage.yml'}",
                      f"    logs_playbook: {PLAYBOOKS / 'logs.yml'}"]
            lines += [f"    {key}: {value}" for key, value in settings.items()]
            lines += [f"    {line}".replace("MARKER", str(self.marker))
                      for line in COMMANDS.get(name, ())]
            lines += [f"    {line}" for line in more.get(name, ())]
        self.config.write_text("\n".join([*lines, *top]) + "\n")

    def _inventory(self, name: str, host_vars: dict) -> None:
        directory = self.root / "inventories" / name
        directory.mkdir(parents=True)
        extra = "".join(f"      {key}: {value!r}\n" for key, value in host_vars.items())
        (directory / "hosts.yml").write_text(textwrap.dedent(f"""\
            app:
              hosts:
                localhost:
                  ansible_connection: local
                  ansible_python_interpreter: {sys.executable}
                  console_test_output: {self.output}
            """) + extra)

    # The server

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
        # This checkout's code, whatever checkout the virtualenv's editable install points to.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
        env.pop("SLIPWAY_CONSOLE_CONFIG", None)
        env.update(self.environ)
        return env

    def start(self) -> None:
        log = open(self.root / "console.log", "a")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            [str(VENV_BIN / "slipway-console"), "serve", "--config", str(self.config),
             "--port", str(self.port)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("the console exited:\n" + self.log())
            try:
                if httpx.get(self.url + "/login", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the console did not answer:\n" + self.log())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the console process alone, as a crash would: its runs are left behind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def log(self) -> str:
        path = self.root / "console.log"
        return path.read_text() if path.exists() else ""

    # Users and clients

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / "slipway-console"), *args, "--config",
                               str(self.config)], input=stdin, capture_output=True, text=True,
                              env=self.env(), timeout=60, check=False)

    def add_user(self, name: str, role: str, *envs: str) -> str:
        args = ["adduser", name, "--role", role]
        for env in envs:
            args += ["--env", env]
        result = self.cli(*args, stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        token = self.cli("token", name)
        assert token.returncode == 0, token.stderr
        self.tokens[name] = token.stdout.strip()
        return self.tokens[name]

    def add_user_by_api(self, name: str, role: str, *envs: str) -> str:
        """Create a user and a token through the API, as the admin `root`."""
        with self.api("root") as client:
            created = client.post("/api/v1/users", json={
                "name": name, "role": role, "environments": list(envs), "password": PASSWORD})
            assert created.status_code == 201, created.text
            token = client.post(f"/api/v1/users/{name}/tokens")
            assert token.status_code == 201, token.text
        self.tokens[name] = token.json()["token"]
        return self.tokens[name]

    def api(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def store(self) -> HistoryStore:
        return HistoryStore(self.store_url)

    # Waiting for runs

    def wait_for(self, run_id: int, statuses: tuple[str, ...] = FINAL,
                 timeout: float = 90, settled: bool = True) -> dict:
        """The run once its status is one of ``statuses`` (and, by default, the console has
        finished with it)."""
        deadline = time.monotonic() + timeout
        with self.api("root") as client:
            while time.monotonic() < deadline:
                status = client.get(f"/api/v1/deploy/status/{run_id}").json()
                if status["status"] in statuses and not (settled and status["active"]):
                    return status
                time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not reach {statuses}: {status}")

    def wait_for_log(self, run_id: int, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with self.api("root") as client:
            while time.monotonic() < deadline:
                if text in client.get(f"/api/v1/deploy/logs/{run_id}").json()["logs"]:
                    return
                time.sleep(0.1)
        raise AssertionError(f"{text!r} did not show in the log of run {run_id}")

    def wait_for_file(self, name: str, timeout: float = 90) -> Path:
        path = self.output / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size:
                return path
            time.sleep(0.1)
        raise AssertionError(f"{path} did not appear")

    def runs(self, **filters: str) -> list[dict]:
        with self.store() as store:
            return store.list_runs(limit=100, **filters)


def login(site: Site, name: str, password: str = PASSWORD, **client_options
          ) -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client that logged in through the form; returns it and the response."""
    client = httpx.Client(base_url=site.url, timeout=60, **client_options)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    response = client.post("/login", data={"name": name, "password": password,
                                           "csrf_token": token, "next": "/runs"})
    return client, response


def csrf_of(client: httpx.Client, page: str = "/deploy") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text).group(1)


def run_processes(run_uuid: str) -> list[int]:
    """Pids of the live processes started with the run's id in their environment: every
    process of a run the console starts (ansible-playbook, its workers, their commands)."""
    marker = f"SLIPWAY_HISTORY_RUN_UUID={run_uuid}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and alive(int(entry)):
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return data[data.rfind(")") + 2:].split()[0] not in ("Z", "X")


def wait_for_pid_in_store(site, run_id: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with site.store() as store:
            run = store.get_run(run_id)
        if run and run.get("pid"):
            return run["pid"]
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} has no pid recorded")


def read_events(client: httpx.Client, path: str, timeout: float = 120) -> list[tuple[str, dict]]:
    """Every (event, data) of a server-sent event stream, until the server ends it."""
    events: list[tuple[str, dict]] = []
    name, data = None, []
    deadline = time.monotonic() + timeout
    with client.stream("GET", path, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError("the stream did not end")
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
            elif line == "" and name:
                events.append((name, json.loads("\n".join(data))))
                name, data = None, []
    return events
