"""Run real ansible-playbook processes with the deploy_history callback, and read the store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "src"))

from slipway.history.store import HistoryStore  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Project:
    """A throw-away inventory directory, playbooks and spool dir for one test."""

    root: Path
    store_url: str
    environment: str = "staging"
    extra_hosts: str = ""
    group_vars: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        inventory = self.root / "inventories" / self.environment
        (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
        hosts = [f"web{i} ansible_connection=local ansible_python_interpreter={sys.executable}"
                 for i in (1, 2)]
        (inventory / "hosts.ini").write_text("[web]\n" + "\n".join(hosts) + "\n"
                                             + self.extra_hosts)
        lines = [f"{name}: {value!r}" for name, value in self.group_vars.items()]
        (inventory / "group_vars" / "all.yml").write_text("---\n" + "\n".join(lines) + "\n")
        self.inventory = inventory / "hosts.ini"
        self.spool_dir = self.root / "spool"

    def playbook(self, name: str, text: str) -> Path:
        path = self.root / f"{name}.yml"
        path.write_text(textwrap.dedent(text))
        return path

    def env(self, run_uuid: str | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PATH": f"{VENV_BIN}:{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_CALLBACKS_ENABLED": "slipway.django.deploy_history",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "SLIPWAY_HISTORY_DB": self.store_url,
            "SLIPWAY_HISTORY_SPOOL_DIR": str(self.spool_dir),
            "SLIPWAY_HISTORY_FLUSH_INTERVAL": "0.2",
            "SLIPWAY_HISTORY_CONNECT_TIMEOUT": "3",
            "SLIPWAY_DEPLOYED_BY": "alice",
        })
        if run_uuid:
            env["SLIPWAY_HISTORY_RUN_UUID"] = run_uuid
        env.update(extra)
        return env

    def argv(self, playbook: Path, *args: str) -> list[str]:
        return [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(playbook),
                *args]

    def run(self, playbook: Path, *args: str, env: dict | None = None,
            **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(playbook, *args), cwd=ROOT, capture_output=True,
                              text=True, env=env or self.env(**extra_env), timeout=180)

    def start(self, playbook: Path, run_uuid: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(playbook, *args), cwd=ROOT, env=self.env(run_uuid),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """slipway-history, finding the store as a user would: through SLIPWAY_HISTORY_DB."""
        return subprocess.run([str(VENV_BIN / "slipway-history"), *args], capture_output=True,
                              text=True, timeout=60,
                              env={**os.environ, "SLIPWAY_HISTORY_DB": self.store_url})

    def store(self) -> HistoryStore:
        return HistoryStore(self.store_url)

    def runs(self) -> list[dict]:
        with self.store() as store:
            return store.list_runs(limit=100, include_deleted=True)

    def only_run(self) -> dict:
        runs = self.runs()
        assert len(runs) == 1, runs
        with self.store() as store:
            return store.get_run(runs[0]["id"])


def new_run_uuid() -> str:
    return str(uuid.uuid4())


def wait_for_log(project: Project, run_uuid: str, text: str, timeout: float = 60) -> dict:
    """Follow the log of a running run, as the console will, until ``text`` shows up."""
    deadline = time.monotonic() + timeout
    with project.store() as store:
        while time.monotonic() < deadline:
            run = store.find_run(run_uuid)
            if run is not None:
                log, _, _ = store.read_log(run["id"])
                if text in log:
                    return run
            time.sleep(0.2)
    raise AssertionError(f"{text!r} did not appear in the log of run {run_uuid}")
