# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_history
type: notification
short_description: Record every playbook run in the slipway deploy history
description:
  - Records each run of C(ansible-playbook) as one row of the C(deploy_history) table (who, when,
    environment, release, branch, commit, playbook, inventory, limit, tags, outcome, log), with a
    per-host summary in C(deploy_host_summary) and one row per task per host in
    C(deploy_task_results). Read it with the C(slipway-history) command.
  - A run's kind is C(deploy), C(rollback), C(unlock) or C(command) (after its playbook, or
    the C(slipway_kind) key it publishes); a run of kind C(command) (C(playbooks/manage.yml))
    also records its manage.py command line, return code and output.
  - The environment is the inventory variable C(slipway_environment) (default, the name of the
    inventory's directory); release id, branch, commit and app come from the C(slipway_*) keys
    that the deploy playbooks publish with M(ansible.builtin.set_stats); the description is the
    extra variable C(deploy_description).
  - Records are written by a background thread in batches, and the log is appended as the run
    goes, so a reader can follow it. If the store cannot be reached, the run goes on with one
    warning and its records are spooled to a local file, written by the next run.
  - Results of C(no_log) tasks are not recorded, and these secrets are masked in every recorded
    text (log, task messages, extra variables, error message). The values of variables whose
    names look secret (password, secret, token, key) or that the argument spec of a role marks
    C(no_log) (the roles of this collection and of the play); vaulted values under any name; the
    passwords of URLs. And, from the time a task has run, the values of its module arguments
    that the module marks C(no_log), and for a C(no_log) task its arguments with secret-looking
    names and what its templates rendered to (8 characters or more, not a number, a boolean or
    a path, and not in arguments that name places, owners or states, such as C(dest), C(owner),
    C(mode) or C(host)).
  - Whatever has the shape of a secret is masked too, under any name. The user-info of a URL
    (C(scheme://user:********@host)), a PEM private key, and the value written after a
    secret-looking name and a colon or an equals sign (C(DB_PASSWORD=...)).
  - The SQLite file of the store and the spool files are created readable by their owner only
    (0600), and made so if they were not.
  - A run stopped by Ctrl-C or SIGTERM is marked C(interrupted); a run whose process was killed
    outright is marked C(interrupted) by the next run on the same controller.
  - Notifications. When the first host of the first play has C(slipway_notifications) (a list of
    C({type, url or address, events, ...}), types C(webhook) (JSON signed with HMAC-SHA256 in
    C(X-Slipway-Signature-256), C(secret) from Vault), C(slack), C(email) (SMTP with STARTTLS,
    C(smtp_host), C(smtp_user), C(smtp_password)), C(dingtalk) (signed with C(secret)) and
    C(wecom)), the run sends C(started) (in the background), then C(succeeded), C(rolled_back),
    C(failed) or C(cancelled), naming the environment, who, the release and commit, the status,
    the duration and the error. Check mode sends nothing. Each send is bounded (5 seconds, one
    retry), never fails the run, and its outcome is a line of the run's log; messages go through
    the same secret masking as the log.
requirements:
  - "the C(slipway) Python package (slipway-tools), shipped in this collection: install it into
    the Python that runs Ansible with C(python3 -m pip install) and the collection's directory
    (which holds C(pyproject.toml) and C(src/)). Without it the callback warns once and records
    nothing; the run goes on."
  - psycopg2 for a C(postgresql://) store
  - PyMySQL for a C(mysql://) store
options:
  db:
    description:
      - Where the history is kept. A path to an SQLite file, or a C(postgresql://user:password@host:port/database)
        or C(mysql://user:password@host:port/database) URL.
      - A relative SQLite path set in C(ansible.cfg) is relative to the directory of that
        C(ansible.cfg); one set in the environment, to the current directory.
      - When unset, the SQLite file C(slipway/history.sqlite3) under C($XDG_DATA_HOME)
        (default C(~/.local/share)).
      - The C(slipway-history) command and the deploy console find the store the same way
        (C(slipway.history.resolve_store_url)).
    type: str
    env:
      - name: SLIPWAY_HISTORY_DB
    ini:
      - section: callback_deploy_history
        key: db
  spool_dir:
    description:
      - Directory for the records of runs that could not reach the store.
      - When unset, C(slipway/history-spool) under C($XDG_DATA_HOME) (default C(~/.local/share)).
    type: path
    env:
      - name: SLIPWAY_HISTORY_SPOOL_DIR
    ini:
      - section: callback_deploy_history
        key: spool_dir
  flush_interval:
    description: Seconds between two batches written to the store while a run goes on.
    type: float
    default: 1.0
    env:
      - name: SLIPWAY_HISTORY_FLUSH_INTERVAL
    ini:
      - section: callback_deploy_history
        key: flush_interval
  connect_timeout:
    description: Seconds to wait for a PostgreSQL or MySQL store to accept a connection.
    type: int
    default: 5
    env:
      - name: SLIPWAY_HISTORY_CONNECT_TIMEOUT
    ini:
      - section: callback_deploy_history
        key: connect_timeout
  shutdown_timeout:
    description: Seconds the end of a run may wait for the last records to be written.
    type: float
    default: 20.0
    env:
      - name: SLIPWAY_HISTORY_SHUTDOWN_TIMEOUT
    ini:
      - section: callback_deploy_history
        key: shutdown_timeout
  deployed_by:
    description:
      - Who started the run, as recorded in C(deployed_by).
      - When unset, the user who ran C(sudo), or else the user running C(ansible-playbook).
    type: str
    env:
      - name: SLIPWAY_DEPLOYED_BY
    ini:
      - section: callback_deploy_history
        key: deployed_by
  run_uuid:
    description:
      - The C(run_uuid) of the run's row, so that a program starting C(ansible-playbook) can find
        and follow the run it started. When unset, a new random UUID.
      - Either way the run's tasks find it in their environment as C(SLIPWAY_HISTORY_RUN_UUID)
        (the deploy lock names its holder with it).
    type: str
    env:
      - name: SLIPWAY_HISTORY_RUN_UUID
"""

import atexit  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import getpass  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible import constants as C  # noqa: E402
from ansible import context  # noqa: E402
from ansible.module_utils.ansible_release import __version__ as ansible_version  # noqa: E402
from ansible.plugins.callback import CallbackBase  # noqa: E402
from ansible.template import Templar  # noqa: E402

try:
    from slipway.history import resolve_store_url
    from slipway.history.secrets import (
        VALIDATE_ACTIONS,
        collection_role_paths,
        mask_secret_names,
        no_log_argument_values,
        no_log_options,
        no_log_task_values,
        role_no_log_options,
        secret_values,
    )
    from slipway.history.store import SecretScrubber, utcnow
    from slipway.history.writer import start_writer
    from slipway.notify import Event, NotifyConfigError, deliver, parse_targets, secrets_of
    from slipway.notify import bound as notify_bound
except ImportError as exc:
    SLIPWAY_IMPORT_ERROR = exc
else:
    SLIPWAY_IMPORT_ERROR = None

# This collection (plugins/callback/ is two levels down): its roles, and what pip installs.
COLLECTION_DIR = Path(__file__).resolve().parents[2]

# set_stats keys published by the deploy playbooks -> deploy_history columns
STATS_COLUMNS = {
    "slipway_release_id": "release_id",
    "slipway_commit": "commit_hash",
    "slipway_branch": "branch",
    "slipway_environment": "environment",
    "slipway_app": "app",
    "slipway_kind": "kind",
    "slipway_command": "command",
    "slipway_command_rc": "command_rc",
    "slipway_command_output": "command_output",
}
# The kind of a run, by its (first) playbook, until the playbook publishes its own.
PLAYBOOK_KINDS = {"deploy.yml": "deploy", "rollback.yml": "rollback", "unlock.yml": "unlock",
                  "manage.yml": "command"}
# A command's output beyond this many characters keeps only its end (the log has it all).
COMMAND_OUTPUT_LIMIT = 65536
NO_LOG_MESSAGE = "the output has been hidden due to no_log"
RULE_WIDTH = 79


def _never_raises(hook):
    """A history problem must never fail the run: warn once and stop recording."""

    @functools.wraps(hook)
    def guarded(self, *args, **kwargs):
        if self._disabled:
            return
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:
            self._disable(exc)

    return guarded


def _plain(value):
    """A rendered variable as plain data: vaulted and lazy strings become str."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _task_origin(task):
    """The role (its short name: ``app`` for ``slipway.django.app``) and the tasks file a task
    comes from, for the console's progress bar; None for a task outside any role."""
    role = getattr(task, "_role", None)
    name = None
    if role is not None:
        try:
            name = role.get_name(include_role_fqcn=False)
        except TypeError:
            name = role.get_name()
        name = str(name).rsplit(".", 1)[-1] or None
    path = None
    try:
        path = task.get_path()
    except Exception:
        path = None
    task_file = os.path.basename(str(path).rsplit(":", 1)[0]) if path else None
    return {"role": name, "task_file": task_file or None}


def _heading(text):
    return f"\n{text} {'*' * max(3, RULE_WIDTH - len(text))}\n"


def _short(value):
    if isinstance(value, str):
        return str(value)  # a plain str, whatever subclass Ansible tagged it with
    try:
        return json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _inventory_environment(sources):
    """The default environment: the directory of the first inventory source."""
    for source in sources or ():
        if "," in source and not os.path.exists(source):
            continue
        path = Path(source).expanduser().resolve()
        return (path if path.is_dir() else path.parent).name or None
    return None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "slipway.django.deploy_history"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._disabled = False
        self._writer = None
        if SLIPWAY_IMPORT_ERROR is not None:
            # Ansible calls no hook of a disabled callback: one warning, and the run goes on.
            self.disabled = self._disabled = True
            self._display.warning(
                f"deploy history: this run is not recorded: the slipway Python package, which "
                f"the callback slipway.django.deploy_history needs, cannot be imported "
                f"({SLIPWAY_IMPORT_ERROR}). Install it into the Python that runs Ansible: "
                f"{sys.executable} -m pip install {COLLECTION_DIR}")
            return
        self._scrubber = SecretScrubber()
        self._secret_names = set()
        self._raw_args = {}
        self._pid = os.getpid()
        self._run_uuid = None
        self._started_at = None
        self._started = False
        self._finished = False
        self._fields = {}
        self._explicit_environment = False
        self._play = None
        self._play_name = ""
        self._task_started = {}
        self._host_started = {}
        self._scanned_hosts = set()
        self._counts = {}
        self._first_error = None
        self._published = set()
        self._interrupted_by = None
        self._previous_handlers = {}
        self._notify_targets = []
        self._notify_started = None

    # Options and lifetime

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if SLIPWAY_IMPORT_ERROR is not None:
            return
        self._run_uuid = self.get_option("run_uuid") or str(uuid.uuid4())
        # Tasks read the run's id from here (the deploy lock names its holder with it); the
        # workers that run them are forked later and inherit it.
        os.environ["SLIPWAY_HISTORY_RUN_UUID"] = self._run_uuid
        self._deployed_by = (self.get_option("deployed_by") or os.environ.get("SUDO_USER")
                             or getpass.getuser())
        self._shutdown_timeout = float(self.get_option("shutdown_timeout"))

    def _disable(self, exc):
        self._disabled = True
        self._display.warning(f"deploy history: recording stopped after an error ({exc}); "
                              "the run goes on")
        if self._writer is not None:
            self._writer.close(0)

    def _submit(self, kind, payload):
        self._writer.submit(kind, payload)
        if self._writer.warnings:
            self._display.warning(self._writer.warnings.popleft())

    def _log(self, text):
        self._submit("log", text)

    def _open(self, playbook):
        self._started_at = utcnow()
        # The `db` option, resolved as the slipway-history command and the console resolve it:
        # the environment, then the ansible.cfg this run reads (relative to its directory).
        url = resolve_store_url(config_file=C.CONFIG_FILE)
        self._writer = start_writer(url, self.get_option, self._run_uuid, self._scrubber)
        cli = context.CLIARGS
        self._fields = {
            "status": "running",
            "deployed_by": self._deployed_by,
            "started_at": self._started_at,
            "playbook": os.path.basename(playbook._file_name),
            "kind": PLAYBOOK_KINDS.get(os.path.basename(playbook._file_name)),
            "inventory": ",".join(cli.get("inventory") or ()) or None,
            "host_limit": cli.get("subset") or None,
            "tags": ",".join(tag for tag in cli.get("tags") or () if tag != "all") or None,
            "skip_tags": ",".join(cli.get("skip_tags") or ()) or None,
            "check_mode": int(bool(cli.get("check"))),
            "environment": _inventory_environment(cli.get("inventory")) or "default",
            "controller": socket.gethostname(),
            "pid": self._pid,
            "ansible_version": ansible_version,
        }
        self._install_signal_handlers()
        atexit.register(self._at_exit)

    def _on_playbook_start(self, playbook):
        if self._writer is None:
            self._open(playbook)
            return
        name = os.path.basename(playbook._file_name)
        self._fields["playbook"] = f"{self._fields['playbook']},{name}"
        if self._started:
            self._submit("update", {"playbook": self._fields["playbook"]})

    def _install_signal_handlers(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Outside the main thread this fails; the atexit handler still records the end.
            with contextlib.suppress(ValueError, OSError):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if os.getpid() == self._pid and not self._disabled:
            self._interrupted_by = signal.Signals(signum).name
            if signum == signal.SIGTERM:
                # The default and ansible's own handlers end the process without atexit.
                with contextlib.suppress(Exception):
                    self._close("interrupted", f"stopped by {self._interrupted_by}", timeout=5)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _at_exit(self):
        if os.getpid() != self._pid or self._disabled:
            return
        with contextlib.suppress(Exception):
            if self._interrupted_by:
                self._close("interrupted", f"stopped by {self._interrupted_by}")
            else:
                self._close("failed", "ansible-playbook ended before the end of the run")

    # Recording

    def _start_run(self, play):
        """The run's row, written once the first play tells the environment and extra vars."""
        variables = play.get_variable_manager()
        extra_vars = dict(variables.extra_vars) if variables is not None else {}
        self._scrubber.add(secret_values(extra_vars, secret_names=self._secret_names))
        self._fields["extra_vars"] = json.dumps(
            mask_secret_names(extra_vars, self._secret_names), sort_keys=True,
            default=str) if extra_vars else None
        if extra_vars.get("deploy_description"):
            self._fields["description"] = str(extra_vars["deploy_description"])
        host_vars = self._first_host_vars(play, variables)
        environment = host_vars.get("slipway_environment")
        if environment:
            self._fields["environment"] = str(environment)
            self._explicit_environment = True
        self._started = True
        self._submit("start", dict(self._fields))
        self._log(f"PLAYBOOK: {self._fields['playbook']}\n")
        self._start_notifications(play, host_vars)

    def _first_host_vars(self, play, variables):
        inventory = getattr(variables, "_inventory", None)
        try:
            hosts = inventory.get_hosts(play.hosts) if inventory is not None else []
        except Exception:
            return {}  # the strategy reports a bad host pattern; nothing to add here
        if not hosts:
            return {}
        return self._scan_host(play, hosts[0], render=True) or {}

    # Notifications (slipway_notifications, slipway.notify): never block or fail the run.

    def _start_notifications(self, play, host_vars):
        if not host_vars.get("slipway_notifications") or self._fields["check_mode"]:
            return
        try:
            rendered = Templar(loader=play.get_loader(), variables=host_vars).template(
                host_vars["slipway_notifications"])
            self._notify_targets = parse_targets(_plain(rendered))
        except NotifyConfigError as exc:
            self._display.warning(f"deploy history: no notification is sent: {exc}")
            return
        except Exception as exc:
            self._display.warning(f"deploy history: no notification is sent: "
                                  f"slipway_notifications cannot be read ({exc})")
            return
        self._scrubber.add(secrets_of(self._notify_targets))
        if any("started" in target.events for target in self._notify_targets):
            # In the background: the run does not wait for the receivers.
            self._notify_started = threading.Thread(
                target=self._notify, args=("started",), daemon=True,
                name="slipway-notify-started")
            self._notify_started.start()

    def _notify(self, event, detail="", deadline=None):
        fields = self._fields
        duration = None
        if event != "started" and self._started_at is not None:
            duration = int((utcnow() - self._started_at).total_seconds())
        outcomes = deliver(self._notify_targets, Event(
            event=event, environment=fields.get("environment") or "",
            app=fields.get("app") or "", who=fields.get("deployed_by") or "",
            release=fields.get("release_id") or "", commit=fields.get("commit_hash") or "",
            branch=fields.get("branch") or "", playbook=fields.get("playbook") or "",
            duration=duration, run_url=os.environ.get("SLIPWAY_CONSOLE_RUN_URL", ""),
            detail=detail or ""), scrub=self._scrubber.scrub, deadline=deadline)
        for outcome in outcomes:
            self._log(outcome.line() + "\n")
        return outcomes

    def _notify_end(self, status, error):
        if not self._notify_targets:
            return
        # The end of a run waits at most one delivery's bound in all: for the started event
        # still on its way (sent first, so receivers see the events in order), then the end
        # event in the time left. A receiver that never answers costs the run that bound.
        deadline = time.monotonic() + notify_bound()
        if self._notify_started is not None:
            self._notify_started.join(max(0.0, deadline - time.monotonic()))
        if status == "success":
            event = "rolled_back" if self._fields.get("kind") == "rollback" else "succeeded"
        else:
            event = "cancelled" if status == "interrupted" else "failed"
        for outcome in self._notify(event, error if event == "failed" else "", deadline):
            if not outcome.delivered:
                self._display.warning(f"deploy history: {outcome.line()}")

    def _scan_host(self, play, host, render=False):
        """Learn the secrets among a host's variables, before any of its results is recorded.

        Templated secrets (a vault lookup, a generated password) are rendered only at the start
        of a play, before any task runs, so a lookup with side effects never races a task.
        """
        self._scanned_hosts.add(host.name)
        variables = play.get_variable_manager()
        if variables is None:
            return None
        try:
            host_vars = variables.get_vars(play=play, host=host, include_hostvars=False)
            renderer = None
            if render:
                renderer = Templar(loader=play.get_loader(), variables=host_vars).template
            self._scrubber.add(secret_values(host_vars, renderer, self._secret_names))
        except Exception as exc:
            self._display.warning(f"deploy history: cannot read the variables of {host.name} "
                                  f"({exc}); secrets among them are not masked in the history")
            return None
        return host_vars

    def _learn_secret_names(self, names):
        """Mask the values of these variables too; hosts already scanned are scanned again."""
        if not set(names) <= self._secret_names:
            self._secret_names |= set(names)
            self._scanned_hosts.clear()

    def _learn_role_specs(self, play):
        """The options that argument specs mark no_log: this collection's roles and the play's
        (``role_cache`` holds every role of the play, imported ones included)."""
        paths = [*collection_role_paths(COLLECTION_DIR / "roles"),
                 *(getattr(play, "role_cache", None) or ())]
        self._learn_secret_names(set().union(*(role_no_log_options(path) for path in paths)))

    def _learn_from_task(self, task, data, no_log):
        """Secrets that a task's rendered arguments reveal, learned before its result is
        recorded (a loop's own result holds unrendered arguments: its items tell)."""
        args = task.args
        if no_log and "results" not in data:
            self._scrubber.add(no_log_task_values(args, self._raw_args.get(task._uuid),
                                                  self._secret_names))
        invocation = data.get("invocation")
        if isinstance(invocation, dict) and invocation.get("module_args"):
            self._scrubber.add(no_log_argument_values(args, invocation["module_args"]))
        if task.action in VALIDATE_ACTIONS:
            # A role's arguments, validated: role parameters are in no host's variables.
            self._learn_secret_names(no_log_options(args.get("argument_spec")))
            self._scrubber.add(secret_values(args.get("provided_arguments") or {},
                                             secret_names=self._secret_names))

    def _on_play_start(self, play):
        self._play = play
        self._play_name = play.get_name().strip()
        self._learn_role_specs(play)
        self._scrubber.add(secret_values(play.get_vars(), secret_names=self._secret_names))
        if not self._started:
            self._start_run(play)
        else:
            self._first_host_vars(play, play.get_variable_manager())
        self._log(_heading(f"PLAY [{self._play_name}]"))

    def _on_task_start(self, task, heading):
        self._task_started[task._uuid] = time.time()
        self._raw_args[task._uuid] = task.args  # what the templates were, for a no_log task
        self._log(_heading(f"{heading} [{task.get_name().strip()}]"))

    def _on_runner_start(self, host, task):
        # Runs in the strategy's results thread: touch nothing but this dict here.
        self._host_started[(host.name, task._uuid)] = time.time()

    def _on_result(self, result, status):
        # The raw data, not the `result` property: that one deep-copies every result.
        data = getattr(result, "_return_data", None) or result._result
        task, host = result._task, result._host.get_name()
        now = time.time()
        if host not in self._scanned_hosts and self._play is not None:
            self._scan_host(self._play, result._host)
        started = (self._host_started.pop((host, task._uuid), None)
                   or self._task_started.get(task._uuid) or now)
        changed = bool(data.get("changed")) and status == "ok"
        no_log = task.no_log is True or "censored" in data
        self._learn_from_task(task, data, no_log)
        message = NO_LOG_MESSAGE if no_log else self._message(data, status, task.action)
        self._count(host, status, changed)
        self._submit("task", {
            "host": host, "play": self._play_name, "task": task.get_name().strip(),
            "action": task.action, "status": status, "changed": int(changed),
            "started_at": started, "duration_ms": int((now - started) * 1000),
            "message": message, **_task_origin(task),
        })
        self._log(self._result_line(host, status, changed, message))
        if status in ("failed", "unreachable") and self._first_error is None:
            self._first_error = f"{host}: {task.get_name().strip()}: {message}"
        if not no_log and task.action in ("set_stats", "ansible.builtin.set_stats"):
            self._publish(data.get("ansible_stats", {}).get("data") or {})

    def _on_item_result(self, result, status):
        """One line per loop item in the live log; the task's row comes with the whole loop."""
        data = getattr(result, "_return_data", None) or result._result
        task, host = result._task, result._host.get_name()
        no_log = task.no_log is True or "censored" in data
        self._learn_from_task(task, data, no_log)
        changed = bool(data.get("changed")) and status == "ok"
        message = "" if no_log else self._message(data, status, task.action)
        label = "(censored)" if no_log else _short(
            data.get("_ansible_item_label", data.get("item", "")))[:200]
        word = {"ok": "changed" if changed else "ok", "skipped": "skipping"}.get(status, status)
        line = f"{word}: [{host}] => (item={label})"
        self._log(f"{line} => {message}\n" if message else f"{line}\n")

    @staticmethod
    def _message(data, status, action):
        if status in ("failed", "ignored", "unreachable"):
            parts = [_short(data.get("msg") or "")]
            for stream in ("stderr", "module_stderr"):
                if data.get(stream):
                    parts.append(_short(data[stream])[-1000:])
            return "\n".join(part for part in parts if part)
        if action in ("debug", "ansible.builtin.debug"):
            return _short(data.get("msg", ""))
        return _short(data.get("msg", "")) if data.get("msg") else ""

    @staticmethod
    def _result_line(host, status, changed, message):
        if status == "ok":
            line = f"{'changed' if changed else 'ok'}: [{host}]"
        elif status == "skipped":
            return f"skipping: [{host}]\n"
        elif status == "unreachable":
            line = f"fatal: [{host}]: UNREACHABLE!"
        else:
            line = f"fatal: [{host}]: FAILED!"
        if message:
            line = f"{line} => {message}"
        return f"{line}\n...ignoring\n" if status == "ignored" else f"{line}\n"

    def _count(self, host, status, changed):
        counts = self._counts.setdefault(host, dict.fromkeys(
            ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored"), 0))
        counts[status if status != "ignored" else "ok"] += 1
        if status == "ignored":
            counts["ignored"] += 1
        if changed:
            counts["changed"] += 1

    def _publish(self, data):
        """Columns from the slipway_* keys of set_stats data; the first value seen wins.

        Aggregated stats add up strings published by several hosts, so the value of a single
        set_stats result is preferred to the one in the final statistics.
        """
        fields = {}
        for key, column in STATS_COLUMNS.items():
            value = data.get(key)
            if value in (None, "") or column in self._published:
                continue
            if column == "environment" and self._explicit_environment:
                continue
            self._published.add(column)
            if column == "command_rc":
                with contextlib.suppress(TypeError, ValueError):
                    fields[column] = int(value)
                continue
            fields[column] = str(value)  # tagged or lazy values become plain text here
            if column == "command_output":
                fields[column] = fields[column][-COMMAND_OUTPUT_LIMIT:]
        if fields:
            self._fields.update(fields)
            self._submit("update", fields)

    def _on_stats(self, stats):
        custom = getattr(stats, "custom", None) or {}
        published = dict(custom.get("_run") or {})
        for host_data in custom.values():
            for key, value in (host_data or {}).items():
                published.setdefault(key, value)
        self._publish(published)
        for host in stats.processed:
            summary = stats.summarize(host)
            summary["failed"] = summary.pop("failures")
            self._counts[host] = summary
        failed = any(c["failed"] or c["unreachable"] for c in self._counts.values())
        self._close("failed" if failed else "success", self._first_error if failed else None)

    def _close(self, status, error, timeout=None):
        """Record the end of the run once, and wait (bounded) for the writer to finish."""
        if self._finished or self._writer is None:
            return
        self._finished = True
        if not self._started:
            self._started = True
            self._submit("start", dict(self._fields))
        self._log(_heading("PLAY RECAP"))
        for host, counts in sorted(self._counts.items()):
            self._log(f"{host:<26}: " + "  ".join(f"{name}={counts[name]}" for name in (
                "ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored"))
                + "\n")
        if status == "interrupted":
            self._log(f"\nINTERRUPTED: {error}\n")
        with contextlib.suppress(Exception):
            self._notify_end(status, error)
        completed = utcnow()
        self._submit("hosts", self._counts)
        self._submit("finish", {
            "status": status, "error_message": error, "completed_at": completed,
            "duration": int((completed - self._started_at).total_seconds()),
        })
        if not self._writer.close(self._shutdown_timeout if timeout is None else timeout):
            self._display.warning("deploy history: the store did not take the last records of "
                                  "this run in time; they may be missing")
        while self._writer.warnings:
            self._display.warning(self._writer.warnings.popleft())

    # Ansible hooks: each hands off to one of the methods above.

    @_never_raises
    def v2_playbook_on_start(self, playbook):
        self._on_playbook_start(playbook)

    @_never_raises
    def v2_playbook_on_play_start(self, play):
        self._on_play_start(play)

    @_never_raises
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._on_task_start(task, "TASK")

    @_never_raises
    def v2_playbook_on_handler_task_start(self, task):
        self._on_task_start(task, "RUNNING HANDLER")

    @_never_raises
    def v2_runner_on_start(self, host, task):
        self._on_runner_start(host, task)

    @_never_raises
    def v2_runner_on_ok(self, result):
        self._on_result(result, "ok")

    @_never_raises
    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._on_result(result, "ignored" if ignore_errors else "failed")

    @_never_raises
    def v2_runner_on_skipped(self, result):
        self._on_result(result, "skipped")

    @_never_raises
    def v2_runner_on_unreachable(self, result):
        self._on_result(result, "unreachable")

    @_never_raises
    def v2_runner_item_on_ok(self, result):
        self._on_item_result(result, "ok")

    @_never_raises
    def v2_runner_item_on_failed(self, result):
        self._on_item_result(result, "failed")

    @_never_raises
    def v2_runner_item_on_skipped(self, result):
        self._on_item_result(result, "skipped")

    @_never_raises
    def v2_playbook_on_stats(self, stats):
        self._on_stats(stats)
