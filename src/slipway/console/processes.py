"""Find, signal and wait for every process of one run, read from /proc (Linux).

A run's ansible-playbook leads its own session and process group (ansible-runner starts it on a
new pseudo-terminal), but that group alone is not the run: Ansible starts each worker in a new
session of its own (``os.setsid``), and the modules and commands of a task live in the worker's
session. Killing the first group would leave the workers and their commands running. So a run's
processes are: its leader, every descendant, every process in a group or session that one of
them leads (which still finds a worker's command after the worker died and it was reparented),
and every process started with the run's marker in its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str

    @property
    def alive(self) -> bool:
        """A zombie has exited and holds nothing but its pid until its parent reaps it."""
        return self.state not in ("Z", "X")


def process_info(pid: int) -> ProcessInfo | None:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as handle:
            data = handle.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = data[data.rfind(")") + 2:].split()
    return ProcessInfo(pid=pid, state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]),
                       sid=int(fields[3]))


def all_processes() -> Iterator[ProcessInfo]:
    for entry in os.listdir(PROC):
        if entry.isdigit():
            info = process_info(int(entry))
            if info is not None:
                yield info


def environ_has(pid: int, name: str, value: str) -> bool:
    """Whether the process was started with NAME=VALUE in its environment."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except OSError:
        return False
    return f"{name}={value}".encode() in entries


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def _shared_ssh_master(pid: int) -> bool:
    """An SSH ControlPersist master: detached on purpose and shared with later runs."""
    command = cmdline(pid)
    return bool(command) and command[0].startswith("ssh:") and command[0].endswith("[mux]")


def find_child_with_env(name: str, value: str) -> int | None:
    """A child of this process that leads its own group and has NAME=VALUE in its environment."""
    own = os.getpid()
    for info in all_processes():
        if info.ppid == own and info.pgid == info.pid and info.alive \
                and environ_has(info.pid, name, value):
            return info.pid
    return None


class RunProcesses:
    """The processes of one run, followed while they fork, start sessions or lose their
    parent. Groups and sessions are remembered once seen, so a worker's command is still
    found after the worker is gone."""

    def __init__(self, leader: int | None, marker: tuple[str, str] | None = None) -> None:
        self.leader = leader
        self.marker = marker
        self.groups: set[int] = set()
        self._signalled: dict[int, set[int]] = {}
        self._unmarked: set[int] = set()
        self._protected = {0, 1, os.getpid(), os.getpgrp(), os.getsid(0)}

    def _is_marked(self, info: ProcessInfo) -> bool:
        # A process without the marker never gains it (only an exec could give it one, and a
        # run's exec is found through its parent), so a "no" is remembered.
        if self.marker is None or info.pid in self._unmarked or 2 in (info.pid, info.ppid):
            return False
        if environ_has(info.pid, *self.marker) and not _shared_ssh_master(info.pid):
            return True
        self._unmarked.add(info.pid)
        return False

    def members(self) -> list[ProcessInfo]:
        """The run's processes that have not exited, as of now."""
        table = [info for info in all_processes() if info.pid not in self._protected]
        found: dict[int, ProcessInfo] = {}
        growing = True
        while growing:
            growing = False
            for info in table:
                if info.pid in found:
                    continue
                if (info.pid == self.leader or info.ppid in found or info.pgid in self.groups
                        or info.sid in self.groups or self._is_marked(info)):
                    found[info.pid] = info
                    growing = True
                    # Only a group or session the member leads is the run's: a run started from
                    # a terminal shares the terminal's session, which is not ours to stop.
                    for group in (info.pgid, info.sid):
                        if group == info.pid and group not in self._protected:
                            self.groups.add(group)
        return [info for info in found.values() if info.alive]

    def signal(self, signum: int) -> int:
        """Send ``signum`` once to every member that has not had it yet; how many got it."""
        sent = self._signalled.setdefault(signum, set())
        count = 0
        for info in self.members():
            if info.pid in sent:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, signum)
                count += 1
            sent.add(info.pid)
        return count

    def wait_gone(self, timeout: float, signum: int | None = None,
                  interval: float = 0.05) -> bool:
        """Wait until no member is left, signalling newcomers with ``signum`` meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if signum is not None:
                self.signal(signum)
            if not self.members():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


@dataclass(frozen=True)
class StopResult:
    gone: bool
    killed: bool
    seconds: float
    processes: int


def stop_run(processes: RunProcesses, grace: float, kill_wait: float = 5.0) -> StopResult:
    """SIGTERM to every process of the run, SIGKILL to whatever is left after ``grace``
    seconds, and wait until none is left."""
    started = time.monotonic()
    count = len(processes.members())
    processes.signal(signal.SIGTERM)
    if processes.wait_gone(grace, signal.SIGTERM):
        return StopResult(True, False, time.monotonic() - started, count)
    gone = processes.wait_gone(kill_wait, signal.SIGKILL)
    return StopResult(gone, True, time.monotonic() - started, count)
