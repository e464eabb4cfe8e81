"""The last lines of the app's journal, per host, read by a fixed playbook (the environment's
``logs_playbook``, by default the collection's playbooks/logs.yml).

Nothing a user types reaches a command line: the unit group is one of UNITS, the line count a
number from 1 to MAX_LINES and the time range one of SINCE, all passed to the playbook as
extra vars data (never templated), where journalctl runs with a fixed argument list. Such a
read is no deploy: it is not written to the deploy history and takes no deploy lock; one at a
time per environment.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from slipway.console import sideplays
from slipway.console.config import Config, Environment
from slipway.console.runs import RunError, RunManager

LOG = logging.getLogger("slipway.console")
# The app's unit groups (playbooks/logs.yml turns each into the units' names).
UNITS = ("web", "workers", "beat", "processes")
MAX_LINES = 500
DEFAULT_LINES = 100
# What the page offers -> journalctl's --since (relative to now on the host).
SINCE = {"15m": "-15min", "1h": "-1h", "6h": "-6h", "24h": "-24h"}
DEFAULT_SINCE = "1h"
TIMEOUT_SECONDS = 120
# The task of the logs playbook whose output is the journal (its name, in every logs playbook).
JOURNAL_TASK = "Read the journal"
MAX_OUTPUT = 1_000_000


class AppLogs:
    def __init__(self, config: Config, runs: RunManager) -> None:
        self.config = config
        self.runs = runs
        self._busy = {name: threading.Lock() for name in config.environments}

    def read(self, environment: Environment, unit: str, lines: int,
             since: str) -> dict[str, Any]:
        """Per host: its journal lines, or why it could not be read. The caller validated
        ``unit``, ``lines`` and ``since``; checked again here."""
        if unit not in UNITS or not 1 <= lines <= MAX_LINES or since not in SINCE:
            raise RunError(422, "unit, lines or since out of range")
        playbook = environment.logs_playbook
        if not playbook.is_file():
            raise RunError(503, f"the logs playbook of environment {environment.name} "
                           f"({playbook}) does not exist")
        lock = self._busy[environment.name]
        if not lock.acquire(blocking=False):
            raise RunError(409, f"the logs of environment {environment.name} are being read; "
                           "try again in a moment")
        try:
            rc, events = sideplays.run_side_playbook(
                self.config, self.runs, environment, playbook, "logs", {
                    "slipway_logs_unit": unit, "slipway_logs_lines": int(lines),
                    "slipway_logs_since": SINCE[since]}, TIMEOUT_SECONDS)
            return {"environment": environment.name, "unit": unit, "lines": lines,
                    "since": since, "rc": rc, "hosts": _hosts(events)}
        finally:
            lock.release()


def _hosts(events: Any) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host:
            continue
        kind = event.get("event")
        result = data.get("res") or {}
        if kind == "runner_on_unreachable":
            found[host] = {"host": host, "output": "", "error": "unreachable: "
                           + str(result.get("msg", ""))[:2000]}
        elif (data.get("task") or "").strip() != JOURNAL_TASK:
            if kind == "runner_on_failed" and not data.get("ignore_errors"):
                found.setdefault(host, {"host": host, "output": "",
                                        "error": str(result.get("msg", "failed"))[:2000]})
        elif kind == "runner_on_ok":
            found[host] = {"host": host, "output": str(result.get("stdout", ""))[-MAX_OUTPUT:],
                           "error": None}
        elif kind == "runner_on_failed":
            message = result.get("stderr") or result.get("msg") or "journalctl failed"
            found[host] = {"host": host, "output": str(result.get("stdout", ""))[-MAX_OUTPUT:],
                           "error": str(message)[:2000]}
    return [found[host] for host in sorted(found)]
