"""The phases of a deploy, and which of the app role's tasks files belongs to which: the one
table the console's progress bar reads (``GET /api/v1/runs/{id}/progress``).

The deploy_history callback records, with each task result, the role and the tasks file the
task comes from (``roles/app/tasks/<file>``, or the release role's); a task of another role,
or of a playbook outside any role, belongs to no phase. A phase is ``done`` on a host once a
later phase has begun there, ``running`` while it is the latest one begun, ``failed`` if one
of its tasks failed (not an ignored error); ``pending`` before. So a host's states only move
forward as its records come in, and a successful run ends with every phase done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# (name, label), in the order a deploy goes through them.
PHASES: tuple[tuple[str, str], ...] = (
    ("lock", "Lock"),
    ("build", "Build"),
    ("checks", "Checks"),
    ("backup", "Backup"),
    ("migrate", "Migrate"),
    ("switch", "Switch"),
    ("health", "Health"),
    ("cleanup", "Cleanup"),
)
PHASE_NAMES = tuple(name for name, _label in PHASES)
STATES = ("pending", "running", "done", "failed")

# The roles whose tasks make the phases (recorded by their short names): ``slipway.django.release``,
# the release mechanics, and ``slipway.django.app``, the steps it plugs in (Django's, the
# database's). Runs recorded before the split name the app role for every file.
ROLES = frozenset({"app", "release"})

# roles/{app,release}/tasks/<file> -> phase. Files not here (main.yml, prepare.yml, hook.yml: the
# hooks run in several phases) move no phase forward.
TASK_FILE_PHASES: Mapping[str, str] = {
    # lock: validate the inventory, take the deploy lock (a rollback: plan under the lock)
    "validate.yml": "lock",
    "lock.yml": "lock",
    "rollback_plan.yml": "lock",
    "rollback_database_plan.yml": "lock",
    # build: fetch the source, build the virtualenv and wheels, render config, collect static
    "source.yml": "build",
    "interpreter.yml": "build",
    "wheels.yml": "build",
    "wheels_copy.yml": "build",
    "frontend.yml": "build",
    "layout.yml": "build",
    "build.yml": "build",
    "install.yml": "build",
    "config.yml": "build",
    "env.yml": "build",
    "env_check.yml": "build",
    "django.yml": "build",
    "static.yml": "build",
    "files_nginx.yml": "build",
    "lockdown.yml": "build",
    # checks: manage.py check --deploy and the other pre-switch checks
    "check.yml": "checks",
    # backup: the database dump taken before migrations (and the scheduled backups' units)
    "backup.yml": "backup",
    "backup_schedule.yml": "backup",
    # migrate: migrations, orphan checks, the admin user; a rollback's database restore
    "migrate.yml": "migrate",
    "orphans.yml": "migrate",
    "admin.yml": "migrate",
    "restore.yml": "migrate",
    # switch (per host, batch by batch): units, the current symlink, the switch back
    "units.yml": "switch",
    "switch.yml": "switch",
    "current.yml": "switch",
    "switch_back.yml": "switch",
    "rollback_switch.yml": "switch",
    # health: the health gate after the switch
    "gate.yml": "health",
    # cleanup: record the release, prune old ones, release the lock
    "record.yml": "cleanup",
    "release.yml": "cleanup",
    "prune.yml": "cleanup",
    "rollback_finish.yml": "cleanup",
    "rollback_database.yml": "cleanup",
    "unlock.yml": "cleanup",
}
# The tasks files that move no phase: entry points that only include others, the hooks and the
# plugged-in steps and state (run in several phases), and a manage.py command (not a deploy).
UNPHASED_TASK_FILES = frozenset({"main.yml", "prepare.yml", "hook.yml", "command.yml",
                                 "steps.yml", "state.yml", "restore_on_failure.yml"})
assert set(TASK_FILE_PHASES.values()) <= set(PHASE_NAMES)


def phase_of(role: str | None, task_file: str | None) -> str | None:
    """The phase of a task recorded with this role and tasks file, or None."""
    if not role or not task_file or role.rsplit(".", 1)[-1] not in ROLES:
        return None
    return TASK_FILE_PHASES.get(task_file)


def progress(tasks: Iterable[Mapping[str, Any]], run_status: str) -> dict[str, Any]:
    """Per host and phase states from a run's task records (in the order they were written)
    and the run's status."""
    index = {name: number for number, name in enumerate(PHASE_NAMES)}
    latest: dict[str, int] = {}
    begun: dict[str, set[int]] = {}
    failed: dict[str, set[int]] = {}
    for task in tasks:
        host = task.get("host")
        phase = phase_of(task.get("role"), task.get("task_file"))
        if not host or phase is None:
            continue
        number = index[phase]
        latest[host] = max(latest.get(host, -1), number)
        begun.setdefault(host, set()).add(number)
        if task.get("status") in ("failed", "unreachable"):
            failed.setdefault(host, set()).add(number)
    hosts = sorted(latest)
    states: dict[str, list[str]] = {}
    for host in hosts:
        row = []
        for number in range(len(PHASE_NAMES)):
            if run_status == "success":
                state = "done"
            elif number in failed.get(host, ()):
                state = "failed"
            elif number < latest[host]:
                state = "done"
            elif number == latest[host]:
                # A run that ended otherwise than well: where it stopped, unless a task that
                # failed earlier says where (the lock is released after any failure).
                state = ("running" if run_status == "running"
                         else "done" if failed.get(host) else "failed")
            else:
                state = "pending"
            row.append(state)
        states[host] = row
    phases = []
    for number, (name, label) in enumerate(PHASES):
        per_host = {host: states[host][number] for host in hosts}
        phases.append({"name": name, "label": label, "hosts": per_host,
                       "state": _overall(list(per_host.values()), run_status)})
    return {"status": run_status, "hosts": hosts, "phases": phases}


def _overall(states: list[str], run_status: str) -> str:
    if not states:
        return "done" if run_status == "success" else "pending"
    if "failed" in states:
        return "failed"
    if all(state == "done" for state in states):
        return "done"
    if all(state == "pending" for state in states):
        return "pending"
    return "running"
