"""Start, follow, cancel and recover the playbook runs of the console.

Each run is an ``ansible-playbook`` started by ansible-runner, on its own pseudo-terminal, so
it leads a new session and process group. The run's row in the deploy history is written here
before the process starts (so its id is known at once and a run that dies before Ansible is up
still has a record); from then on the deploy_history callback, enabled for every run, fills it
in, exactly as for a run started from a terminal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from ansible.module_utils.ansible_release import __version__ as ansible_version

from slipway.ansible_cfg import ConfigFileError, cfg_value, find_ansible_cfg
from slipway.collection import collection_root
from slipway.console.config import Config, Environment
from slipway.console.db import ConsoleDB
from slipway.console.processes import (
    RunProcesses,
    cmdline,
    environ_has,
    find_child_with_env,
    process_info,
    stop_run,
)
from slipway.history import resolve_store_url
from slipway.history import store as history_store

LOG = logging.getLogger("slipway.console")
RUN_UUID_VARIABLE = "SLIPWAY_HISTORY_RUN_UUID"
CALLBACK = "slipway.django.deploy_history"
KINDS = ("deploy", "rollback", "unlock", "command")
# The kinds of runs that take the deploy lock (released when the console stops one).
LOCKING_KINDS = ("deploy", "rollback", "command")


class RunError(Exception):
    """A run cannot be started or stopped; ``status`` is the HTTP status that fits."""

    def __init__(self, status: int, message: str, /, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class _Unsafe(str):
    """A string written with YAML's ``!unsafe`` tag."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(
    _Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value), style='"'))


def _unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, dict):
        return {str(key): _unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_unsafe(item) for item in value]
    return value


def write_unsafe_extravars(path: Path, extra_vars: dict[str, Any]) -> None:
    """Write the run's extra vars, every string tagged ``!unsafe``: whatever a console user typed
    (a branch, a description, a release id) reaches the playbook as data, and Ansible never
    renders it as a template (``{{ lookup('pipe', ...) }}`` stays text). 0600 in a 0700
    directory."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = yaml.dump(_unsafe(extra_vars), Dumper=_UnsafeDumper, allow_unicode=True,
                     default_flow_style=False, sort_keys=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def private_dir(path: Path) -> Path:
    """Make the directory and any missing parent 0700 (a run's work files hold its
    environment); one that exists already is made 0700 too, its parents are left alone."""
    missing = [parent for parent in (path, *path.parents) if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    os.chmod(path, 0o700)
    return path


def pid_alive(pid: int) -> bool:
    info = process_info(pid)
    return info is not None and info.alive


def _read_stdout(runner: Any) -> str:
    """What ansible-playbook printed (ansible-runner keeps it among the run's artifacts)."""
    if runner is None:
        return ""
    try:
        with runner.stdout as handle:
            return handle.read()
    except Exception:
        return ""


@dataclass
class Job:
    """One run this console process started and follows until its process has ended."""

    run_uuid: str
    run_id: int
    environment: str
    kind: str
    user: str
    started: float = field(default_factory=time.monotonic)
    leader: int | None = None
    kill_now: bool = False
    cancelled_by: str | None = None
    stop_note: str | None = None
    rc: int | None = None
    # Stopped by a console shutdown: the launch stays open, so the next start releases its lock.
    keep_launch: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class RunManager:
    """Every run of this console goes through here; one instance per console process."""

    def __init__(self, config: Config, db: ConsoleDB) -> None:
        self.config = config
        self.db = db
        self.hostname = socket.gethostname()
        self.ansible_cfg = self._ansible_cfg()
        self.store_url = self._store_url()
        self._jobs: dict[str, Job] = {}
        self._stopping: set[str] = set()
        self._jobs_lock = threading.Lock()
        self._environment_locks = {name: threading.Lock() for name in config.environments}
        self._local = threading.local()
        private_dir(config.work_dir())

    # Where things are

    def _ansible_cfg(self) -> Path | None:
        """The ansible.cfg the runs read: the console's, else Ansible's search from the config
        file's directory (the runs' working directory)."""
        if self.config.ansible_config:
            return self.config.ansible_config
        return find_ansible_cfg(cwd=self.config.directory)

    def _cfg_value(self, section: str, key: str) -> str | None:
        if self.ansible_cfg is None:
            return None
        try:
            return cfg_value(self.ansible_cfg, section, key)
        except ConfigFileError:
            return None

    def _store_url(self) -> str:
        """The history store the callback writes to, resolved the way it resolves it."""
        return resolve_store_url(self.config.history_db, config_file=self.ansible_cfg,
                                 cwd=self.config.directory)

    def store(self) -> history_store.HistoryStore:
        """This thread's connection to the history store."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = history_store.open_store(self.store_url)
        return store

    def _collections_path(self) -> str:
        root = collection_root()
        if root.parent.parent.name == "ansible_collections":
            ours = root.parents[2]
        else:  # a checkout: `make venv` links .cache/collections/ansible_collections/slipway/django
            ours = root / ".cache" / "collections"
        configured = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or ""
        if not configured:
            value = self._cfg_value("defaults", "collections_path") or self._cfg_value(
                "defaults", "collections_paths")
            if value and self.ansible_cfg is not None:
                configured = os.pathsep.join(
                    str((self.ansible_cfg.parent / Path(entry).expanduser()).resolve())
                    for entry in value.split(os.pathsep) if entry)
            else:
                configured = os.pathsep.join(("~/.ansible/collections",
                                              "/usr/share/ansible/collections"))
        return os.pathsep.join(dict.fromkeys([str(ours), *configured.split(os.pathsep)]))

    def _callbacks_enabled(self) -> str:
        configured = (os.environ.get("ANSIBLE_CALLBACKS_ENABLED")
                      or self._cfg_value("defaults", "callbacks_enabled") or "")
        names = [name.strip() for name in configured.split(",") if name.strip()]
        return ",".join(dict.fromkeys([*names, CALLBACK]))

    def run_environment(self, run_uuid: str, user: str) -> dict[str, str]:
        """What a run gets on top of the console's own environment."""
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", os.defpath)]),
            RUN_UUID_VARIABLE: run_uuid,
            "SLIPWAY_DEPLOYED_BY": user,
            "SLIPWAY_HISTORY_DB": self.store_url,
            "SLIPWAY_HISTORY_FLUSH_INTERVAL": str(self.config.log_flush_interval),
            "ANSIBLE_CALLBACKS_ENABLED": self._callbacks_enabled(),
            "ANSIBLE_COLLECTIONS_PATH": self._collections_path(),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            # ansible-runner turns host key checking off unless told; keep Ansible's default.
            "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING") or (
                self._cfg_value("defaults", "host_key_checking") or "True"),
        }
        if self.ansible_cfg is not None:
            env["ANSIBLE_CONFIG"] = str(self.ansible_cfg)
        link = self.config.run_link(run_uuid)
        if link is not None:
            # Notifications link to the run through it (public, not a secret).
            env["SLIPWAY_CONSOLE_RUN_URL"] = link
        return env

    # Questions the API asks

    def running_run(self, environment: str) -> dict[str, Any] | None:
        """The newest run of the environment still marked running in the history."""
        runs = self.store().list_runs(environment=environment, status="running", limit=1)
        return runs[0] if runs else None

    def is_active(self, run_uuid: str) -> bool:
        """Whether this console still has a process or a stop under way for the run: until
        then a finished status does not mean the log is complete."""
        with self._jobs_lock:
            return run_uuid in self._jobs or run_uuid in self._stopping

    def job(self, run_uuid: str) -> Job | None:
        with self._jobs_lock:
            return self._jobs.get(run_uuid)

    # Starting

    def start(self, environment: Environment, kind: str, user: str, *,
              branch: str | None = None, skip_build: bool = False,
              skip_migrations: bool = False, description: str | None = None,
              release: str | None = None, restore_db: bool = False,
              unlock_run_uuid: str | None = None, command: str | None = None,
              dry_run: bool = False, check_busy: bool = True,
              commit: str | None = None) -> Job:
        """Write the run's row and start ansible-playbook; RunError 409 if the environment has a
        run going (the history is asked, so runs of other consoles and terminals count)."""
        if kind not in KINDS:
            raise ValueError(kind)
        playbook = {"deploy": environment.deploy_playbook,
                    "rollback": environment.rollback_playbook,
                    "unlock": environment.unlock_playbook,
                    "command": environment.manage_playbook}[kind]
        if not playbook.is_file():
            raise RunError(503, f"the {kind} playbook of environment {environment.name} "
                           f"({playbook}) does not exist")
        extra_vars: dict[str, Any] = {}
        skip_tags = []
        if kind == "deploy":
            # A commit (a webhook's pushed SHA, checked 40-hex) is deployed rather than the
            # branch's head at the time; either way only data, in app_version.
            extra_vars["app_version"] = commit or branch or environment.default_branch
            skip_tags = [tag for tag, skip in (("build", skip_build),
                                               ("migrate", skip_migrations)) if skip]
        elif kind == "rollback":
            if release:
                extra_vars["release"] = release
            if restore_db:
                extra_vars["restore_db"] = True
        elif kind == "command":
            # A fixed line of the allow-list, passed as data (never a template, never an option).
            extra_vars["command"] = command
            extra_vars["dry_run"] = bool(dry_run)
        else:
            extra_vars["app_deploy_lock_run"] = unlock_run_uuid
        if description:
            extra_vars["deploy_description"] = description
        run_uuid = str(uuid.uuid4())
        fields = {
            "environment": environment.name,
            "status": "running",
            "deployed_by": user,
            "description": description,
            "branch": (branch or environment.default_branch) if commit
                      else extra_vars.get("app_version"),
            "commit_hash": commit if kind == "deploy" else None,
            "release_id": release if kind == "rollback" else None,
            "playbook": playbook.name,
            "kind": kind,
            "command": command if kind == "command" else None,
            "inventory": str(environment.inventory),
            "skip_tags": ",".join(skip_tags) or None,
            "extra_vars": json.dumps(extra_vars, sort_keys=True),
            "controller": self.hostname,
            "ansible_version": ansible_version,
            "started_at": history_store.utcnow(),
        }
        lock = self._environment_locks[environment.name]
        with lock:
            if check_busy:
                running = self.running_run(environment.name)
                if running is not None:
                    raise RunError(409, f"environment {environment.name} has a run going: "
                                   f"run {running['id']} ({running['playbook']}, started by "
                                   f"{running['deployed_by']}); wait for it or cancel it",
                                   running_id=running["id"])
            run_id = self.store().apply(run_uuid, [("start", fields)])
            self.db.add_launch(run_uuid, run_id, environment.name, kind)
            job = Job(run_uuid=run_uuid, run_id=run_id, environment=environment.name,
                      kind=kind, user=user)
            with self._jobs_lock:
                self._jobs[run_uuid] = job
        job.thread = threading.Thread(
            target=self._follow, name=f"run-{run_id}",
            args=(job, environment, playbook, extra_vars, skip_tags), daemon=True)
        job.thread.start()
        threading.Thread(target=self._find_leader, args=(job,), name=f"leader-{run_id}",
                         daemon=True).start()
        LOG.info("run %s started: %s %s of %s by %s", run_id, kind, playbook, environment.name,
                 user)
        return job

    def _find_leader(self, job: Job) -> None:
        """Learn the pid of the run's ansible-playbook as soon as it exists."""
        while not job.done.is_set():
            pid = find_child_with_env(RUN_UUID_VARIABLE, job.run_uuid)
            if pid is not None:
                job.leader = pid
                with contextlib.suppress(Exception):
                    self.db.set_launch_pid(job.run_uuid, pid)
                    self.store().apply(job.run_uuid, [("update", {"pid": pid})])
                return
            time.sleep(0.1)

    def _follow(self, job: Job, environment: Environment, playbook: Path,
                extra_vars: dict[str, Any], skip_tags: list[str]) -> None:
        work = self.config.work_dir() / job.run_uuid
        work.mkdir(parents=True, mode=0o700)
        runner = None
        failure = ""
        try:
            # Passed as a file of data Ansible never templates (see write_unsafe_extravars);
            # ansible-runner hands env/extravars to ansible-playbook as `-e @FILE`.
            write_unsafe_extravars(work / "env" / "extravars", extra_vars)
            runner = ansible_runner.interface.init_runner(
                private_data_dir=str(work),
                project_dir=str(self.config.directory),
                ident="run",
                playbook=str(playbook),
                inventory=str(environment.inventory),
                skip_tags=",".join(skip_tags) or None,
                envvars=self.run_environment(job.run_uuid, job.user),
                fact_cache_type="memory",
                suppress_env_files=True,
                quiet=True,
                settings={"pexpect_timeout": 0.1, "suppress_ansible_output": True},
                cancel_callback=lambda: job.kill_now,
                event_handler=lambda event: False,
            )
            runner.run()
            job.rc = runner.rc
        except Exception as exc:
            LOG.exception("run %s could not be started", job.run_id)
            failure = f"the console could not start ansible-playbook: {exc}\n"
        finally:
            try:
                self._settle(job, lambda: failure or _read_stdout(runner))
            finally:
                shutil.rmtree(work, ignore_errors=True)
                if not job.keep_launch:
                    self.db.finish_launch(job.run_uuid)
                job.done.set()
                with self._jobs_lock:
                    self._jobs.pop(job.run_uuid, None)

    def _settle(self, job: Job, output: Callable[[], str]) -> None:
        """After the process ended: the history row gets whatever the callback could not write
        (a run killed, or one that died before Ansible was up, keeps ansible-playbook's output)."""
        store = self.store()
        row = store.find_run(job.run_uuid) or {}
        operations: list[tuple[str, Any]] = []
        text = "" if row.get("logs") else output()
        if text.strip():
            # ansible-playbook's own output, which no callback scrubbed: mask what has the shape
            # of a secret, and the store's password, as the callback would have.
            scrubber = history_store.SecretScrubber(history_store.url_passwords(self.store_url))
            operations.append(("log", scrubber.scrub(text if text.endswith("\n") else text + "\n")))
        if job.cancelled_by:
            operations.append(("log", f"\nCANCELLED by {job.cancelled_by}"
                               f"{': ' + job.stop_note if job.stop_note else ''}\n"))
            operations.append(("update", {"error_message": f"cancelled by {job.cancelled_by}"}))
        now = history_store.utcnow()
        started = row.get("started_at") or now
        duration = int((now - started).total_seconds())
        if row.get("status") == "running":
            if job.rc == 0:
                status, error = "success", None
            elif job.rc is None or job.rc < 0 or job.rc == 254:
                status, error = "interrupted", "ansible-playbook was stopped before the end"
            else:
                status, error = "failed", f"ansible-playbook exited with status {job.rc}"
            operations.append(("finish", {"status": status, "error_message": error,
                                          "completed_at": now, "duration": duration}))
        elif row.get("duration") is None:
            operations.append(("update", {"completed_at": row.get("completed_at") or now,
                                          "duration": duration}))
        if operations:
            store.apply(job.run_uuid, operations)

    # Stopping

    def cancel(self, run: dict[str, Any], user: str) -> dict[str, Any]:
        """Stop a running run: mark it cancelled, stop every process of it (SIGTERM, then
        SIGKILL after the grace period) and wait until none is left."""
        run_uuid = run["run_uuid"]
        marker = (RUN_UUID_VARIABLE, run_uuid)
        job = self.job(run_uuid)
        processes = None
        if job is not None:
            # The marker finds the run's processes even before the leader's pid is known.
            processes = RunProcesses(job.leader, marker)
        elif run.get("controller") != self.hostname:
            raise RunError(409, f"run {run['id']} runs on controller {run.get('controller')}, "
                           f"not on this console's host ({self.hostname}): cancel it there")
        elif run.get("pid") and pid_alive(run["pid"]):
            pid = run["pid"]
            if not (environ_has(pid, *marker)
                    or any("ansible-playbook" in part for part in cmdline(pid)[:2])):
                raise RunError(409, f"process {pid} of run {run['id']} is not an "
                               "ansible-playbook any more; not stopping it")
            processes = RunProcesses(pid, marker)
        with self._jobs_lock:
            self._stopping.add(run_uuid)
        try:
            if not self.store().mark_cancelled(run["id"], f"cancelled by {user}"):
                current = self.store().get_run(run["id"]) or {}
                raise RunError(409, f"run {run['id']} is not running (it is "
                               f"{current.get('status')})", run_status=current.get("status"))
            if job is not None:
                job.cancelled_by = user
            result = {"gone": True, "killed": False, "seconds": 0.0, "processes": 0}
            if processes is not None:
                stopped = stop_run(processes, self.config.cancel_grace_seconds)
                result = {"gone": stopped.gone, "killed": stopped.killed,
                          "seconds": round(stopped.seconds, 3), "processes": stopped.processes}
            how = " (SIGKILL after the grace period)" if result["killed"] else " (SIGTERM)"
            note = (f"{result['processes']} processes stopped in {result['seconds']:.2f} s{how}"
                    if result["processes"] else "no process of it was left")
            if not result["gone"]:
                note += "; SOME PROCESSES OUTLIVED SIGKILL"
                LOG.error("run %s: processes left after SIGKILL", run["id"])
            if job is not None:
                job.stop_note = note
                # Before ansible-playbook exists, ansible-runner kills it as soon as it starts.
                job.kill_now = True
                job.done.wait(self.config.cancel_grace_seconds + 10)
            else:
                self.store().apply(run_uuid, [("log", f"\nCANCELLED by {user}: {note}\n"),
                                              ("update", {"error_message": f"cancelled by {user}",
                                                          "completed_at": history_store.utcnow()})])
            return result
        finally:
            with self._jobs_lock:
                self._stopping.discard(run_uuid)

    def release_lock(self, environment: Environment, run: dict[str, Any],
                     user: str) -> dict[str, Any]:
        """Run the unlock playbook for a stopped run; the outcome goes into the run's log."""
        try:
            unlock = self.start(environment, "unlock", user, unlock_run_uuid=run["run_uuid"],
                                description=f"release the deploy lock held by run {run['id']}",
                                check_busy=False)
        except RunError as exc:
            message = f"the deploy lock was NOT released: {exc.message}\n"
            self.store().apply(run["run_uuid"], [("log", message)])
            return {"unlock_run_id": None, "unlock_error": exc.message}
        message = f"releasing the deploy lock: run {unlock.run_id}\n"
        self.store().apply(run["run_uuid"], [("log", message)])
        return {"unlock_run_id": unlock.run_id, "unlock_error": None}

    def recover(self, on_interrupted: Callable[[dict[str, Any], str], None]) -> list[int]:
        """At start: the runs a console that is gone left behind are stopped if their process
        is still there, marked ``interrupted``, and handed to ``on_interrupted`` (lock release).
        Then runs of this controller whose ansible-playbook died are marked too."""
        store = self.store()
        interrupted = []
        for launch in self.db.running_launches():
            row = store.find_run(launch["run_uuid"])
            marker = (RUN_UUID_VARIABLE, launch["run_uuid"])
            pid = launch["pid"] or (row or {}).get("pid")
            processes = RunProcesses(pid if pid and environ_has(pid, *marker) else None, marker)
            note = "its console stopped"
            if processes.members():
                stopped = stop_run(processes, self.config.cancel_grace_seconds)
                note += (f"; {stopped.processes} leftover processes were stopped in "
                         f"{stopped.seconds:.2f} s")
            if row is not None and row["status"] == "running":
                now = history_store.utcnow()
                started = row.get("started_at") or now
                store.apply(launch["run_uuid"], [
                    ("log", f"\nINTERRUPTED: {note}; marked when the console started again\n"),
                    ("finish", {"status": "interrupted", "error_message": f"interrupted: {note}",
                                "completed_at": now,
                                "duration": int((now - started).total_seconds())})])
                interrupted.append(row["id"])
            if row is not None and launch["kind"] in LOCKING_KINDS:
                # The console never saw this run end: release its lock (the unlock playbook
                # leaves a lock alone unless this run holds it).
                on_interrupted(row, launch["environment"])
            # Its work files (the run's environment) outlived the console that made them.
            shutil.rmtree(self.config.work_dir() / launch["run_uuid"], ignore_errors=True)
            self.db.finish_launch(launch["run_uuid"])
        interrupted += store.mark_stale_runs(self.hostname, pid_alive, os.getpid())
        return interrupted

    def stop_all(self, reason: str) -> None:
        """At shutdown: stop every run this console follows; the next start releases locks."""
        with self._jobs_lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.keep_launch = True
            stop_run(RunProcesses(job.leader, (RUN_UUID_VARIABLE, job.run_uuid)),
                     self.config.cancel_grace_seconds)
            job.kill_now = True
        for job in jobs:
            job.done.wait(self.config.cancel_grace_seconds + 10)
            LOG.warning("run %s stopped: %s", job.run_id, reason)
