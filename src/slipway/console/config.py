"""The console's configuration file (YAML); every path in it is relative to the file.

    history_db: postgresql://...        # default: $SLIPWAY_HISTORY_DB, ansible.cfg, ~/.local/...
    console_db: console.sqlite3         # users, tokens, sessions, approvals, audit
    runner_dir: runner                  # default: beside console_db; a run's work files
    ansible_config: ../ansible.cfg      # default: $ANSIBLE_CONFIG, else Ansible's own search
    cancel_grace_seconds: 10            # SIGTERM, then SIGKILL after this long
    log_flush_interval: 0.25            # how often a run writes its log to the history
    log_poll_interval: 0.1              # how often a live log follower reads it
    session_hours: 12
    cookie_secure: false                # true behind HTTPS
    login_max_failures: 5               # failed logins of a name from an address (0: no limit)
    login_account_max_failures: 20      # failed logins of a name from any address (0: no limit)
    login_window_seconds: 900           # ... counted over this window, then allowed again
    max_body_bytes: 1048576             # larger request bodies get 413 before anything else
    public_url: https://deploy.example.org   # the console's external base URL (http or https);
                                        # notifications link to a run through it
    environments:
      staging:
        inventory: inventories/staging
        deploy_playbook: playbooks/deploy.yml      # default: this collection's
        rollback_playbook: playbooks/rollback.yml  # default: this collection's
        unlock_playbook: playbooks/unlock.yml      # default: this collection's
        manage_playbook: playbooks/manage.yml      # default: this collection's
        logs_playbook: playbooks/logs.yml          # default: this collection's (app logs)
        notify_playbook: playbooks/notify.yml      # default: this collection's (approval_needed)
        default_branch: main
        requires_approval: false
        commands:                                  # one-off manage.py commands it offers
          - name: backfill_po                      # what the console shows and the API names
            command: backfill_po --days 7 --limit 10   # a fixed command line, never edited
            dry_run: true                          # offer a "Dry run" (default: false)
        webhook:                                   # POST /api/v1/deploy/webhook/staging
          secret_file: secrets/staging-webhook     # the shared secret; 0600 (or 0400)
          branches: [main, "release/*"]            # fnmatch patterns (default: default_branch)
    schedules:                                     # deploys on a timer, run as schedule:ENV
      - {environment: staging, branch: main, cron: "30 4 * * 1-5", description: nightly}
    schedule_tick: 1                               # how often the scheduler looks (seconds)
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from slipway import manage_command
from slipway.collection import CollectionNotFound, collection_root
from slipway.console import cron
from slipway.console.security import InputError, check_branch, check_description

ENVIRONMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
COMMAND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_CONFIG = "/etc/slipway/console.yml"


class ConfigError(Exception):
    """The configuration file is missing or wrong; the message says where and how."""


@dataclass(frozen=True)
class Command:
    """One entry of an environment's allow-list of manage.py commands."""

    name: str
    command: str
    dry_run: bool = False


@dataclass(frozen=True)
class Webhook:
    """Deploys on a push: the file of the secret shared with the forge, and the branches."""

    secret_file: Path
    branches: tuple[str, ...]


@dataclass(frozen=True)
class Schedule:
    """A deploy of a branch when a cron expression (UTC) comes due."""

    environment: str
    branch: str
    cron: cron.Cron
    description: str | None = None

    @property
    def key(self) -> str:
        """What the console remembers the schedule's last outcome by."""
        return f"{self.environment} {self.branch} {self.cron.expression}"


@dataclass(frozen=True)
class Environment:
    name: str
    inventory: Path
    deploy_playbook: Path
    rollback_playbook: Path
    unlock_playbook: Path
    manage_playbook: Path
    logs_playbook: Path
    notify_playbook: Path
    default_branch: str = "main"
    requires_approval: bool = False
    commands: tuple[Command, ...] = ()
    webhook: Webhook | None = None

    def command(self, name: str) -> Command | None:
        return next((entry for entry in self.commands if entry.name == name), None)


@dataclass(frozen=True)
class Config:
    path: Path
    environments: dict[str, Environment]
    console_db: Path
    history_db: str | None = None
    ansible_config: Path | None = None
    cancel_grace_seconds: float = 10.0
    log_flush_interval: float = 0.25
    log_poll_interval: float = 0.1
    session_hours: float = 12.0
    cookie_secure: bool = False
    runner_dir: Path | None = None
    login_max_failures: int = 5
    login_account_max_failures: int = 20
    login_window_seconds: float = 900.0
    max_body_bytes: int = 1048576
    schedules: tuple[Schedule, ...] = ()
    schedule_tick: float = 1.0
    public_url: str | None = None

    def run_link(self, run_uuid: str) -> str | None:
        """The external address of a run (a redirect to its page), when public_url is set."""
        return f"{self.public_url}/runs/by-uuid/{run_uuid}" if self.public_url else None

    @property
    def directory(self) -> Path:
        return self.path.parent

    def work_dir(self) -> Path:
        """Where ansible-runner keeps a run's private data while it goes (removed after)."""
        return self.runner_dir or self.console_db.parent / "runner"


_TOP_KEYS = {"environments", "console_db", "history_db", "ansible_config", "cancel_grace_seconds",
             "log_flush_interval", "log_poll_interval", "session_hours", "cookie_secure",
             "runner_dir", "login_max_failures", "login_account_max_failures",
             "login_window_seconds", "max_body_bytes", "schedules", "schedule_tick",
             "public_url"}
_ENV_KEYS = {"inventory", "deploy_playbook", "rollback_playbook", "unlock_playbook",
             "manage_playbook", "logs_playbook", "notify_playbook", "default_branch",
             "requires_approval", "commands", "webhook"}
_COMMAND_KEYS = {"name", "command", "dry_run"}
_WEBHOOK_KEYS = {"secret_file", "branches"}
_SCHEDULE_KEYS = {"environment", "branch", "cron", "description"}


def default_config_path() -> Path:
    return Path(os.environ.get("SLIPWAY_CONSOLE_CONFIG") or DEFAULT_CONFIG)


def _number(data: dict[str, Any], key: str, default: float, where: Path,
            minimum: float = 0.0) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{where}: {key} must be a number of at least {minimum}, not {value!r}")
    return float(value)


def _path(base: Path, value: Any, key: str, where: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a path, not {value!r}")
    return (base / Path(value).expanduser()).resolve()


def _environment(name: Any, data: Any, base: Path, where: Path) -> Environment:
    if not isinstance(name, str) or not ENVIRONMENT_NAME.match(name):
        raise ConfigError(f"{where}: environment name {name!r} must be letters, digits, '.', "
                          "'_' or '-' (starting with a letter or digit)")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: environment {name} must be a mapping with at least "
                          "an inventory")
    unknown = sorted(set(data) - _ENV_KEYS)
    if unknown:
        raise ConfigError(f"{where}: environment {name} has unknown keys {unknown}; "
                          f"known keys: {sorted(_ENV_KEYS)}")
    if "inventory" not in data:
        raise ConfigError(f"{where}: environment {name} needs an inventory")
    inventory = _path(base, data["inventory"], f"environments.{name}.inventory", where)
    if not inventory.exists():
        raise ConfigError(f"{where}: the inventory of environment {name} ({inventory}) "
                          "does not exist")
    try:
        playbooks = collection_root() / "playbooks"
    except CollectionNotFound as exc:
        raise ConfigError(f"{where}: environment {name} uses the collection's playbooks: "
                          f"{exc}") from None
    paths = {}
    for key, default in (("deploy_playbook", "deploy.yml"), ("rollback_playbook", "rollback.yml"),
                         ("unlock_playbook", "unlock.yml"), ("manage_playbook", "manage.yml"),
                         ("logs_playbook", "logs.yml"), ("notify_playbook", "notify.yml")):
        if key in data:
            paths[key] = _path(base, data[key], f"environments.{name}.{key}", where)
            if not paths[key].is_file():
                raise ConfigError(f"{where}: {key} of environment {name} ({paths[key]}) "
                                  "does not exist")
        else:
            paths[key] = playbooks / default
    branch = data.get("default_branch", "main")
    if not isinstance(branch, str) or not branch:
        raise ConfigError(f"{where}: default_branch of environment {name} must be a branch name")
    approval = data.get("requires_approval", False)
    if not isinstance(approval, bool):
        raise ConfigError(f"{where}: requires_approval of environment {name} must be true or "
                          f"false, not {approval!r}")
    webhook = (_webhook(name, data["webhook"], branch, base, where)
               if data.get("webhook") is not None else None)
    return Environment(name=name, inventory=inventory, default_branch=branch,
                       requires_approval=approval, webhook=webhook,
                       commands=_commands(name, data.get("commands", []), where), **paths)


def read_secret(path: Path) -> str:
    """The secret in the file (surrounding whitespace dropped); the file must be a regular
    file no one but its owner may read or write, and not empty."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ConfigError(f"the secret file {path} is not a regular file")
        if status.st_mode & 0o077:
            raise ConfigError(f"the secret file {path} is readable or writable by others "
                              f"(mode {stat.S_IMODE(status.st_mode):04o}); make it 0600")
        secret = handle.read(65537).decode("utf-8", "replace").strip()
    if not secret or len(secret) > 65536:
        raise ConfigError(f"the secret file {path} is empty or longer than 64 KiB")
    return secret


def _webhook(environment: str, data: Any, default_branch: str, base: Path,
             where: Path) -> Webhook:
    at = f"{where}: webhook of environment {environment}"
    if not isinstance(data, dict) or "secret_file" not in data:
        raise ConfigError(f"{at} must be a mapping with a secret_file (and branches)")
    unknown = sorted(set(data) - _WEBHOOK_KEYS)
    if unknown:
        raise ConfigError(f"{at} has unknown keys {unknown}; known keys: "
                          f"{sorted(_WEBHOOK_KEYS)}")
    secret_file = _path(base, data["secret_file"], f"environments.{environment}.webhook."
                        "secret_file", where)
    read_secret(secret_file)
    branches = data.get("branches", [default_branch])
    if (not isinstance(branches, list) or not branches
            or not all(isinstance(entry, str) and entry for entry in branches)):
        raise ConfigError(f"{at}: branches must be a list of branch names or fnmatch patterns")
    return Webhook(secret_file=secret_file, branches=tuple(branches))


def _public_url(value: Any, where: Path) -> str | None:
    """The console's external base URL: http(s), a host, no query, fragment or credentials;
    any trailing '/' dropped."""
    if value is None:
        return None
    problem = f"{where}: public_url must be the console's http(s) base URL, not {value!r}"
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ConfigError(problem)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError(problem) from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment or "?" in value or "#" in value or parts.username is not None
            or parts.password is not None):
        raise ConfigError(problem + " (http or https, a host, no query, fragment or "
                          "credentials)")
    return value.rstrip("/")


def _schedules(data: Any, environments: dict[str, Environment], where: Path
               ) -> tuple[Schedule, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{where}: schedules must be a list of {{environment, branch, cron, "
                          "description}} mappings")
    schedules: list[Schedule] = []
    for number, entry in enumerate(data, 1):
        at = f"{where}: schedules entry {number}"
        if not isinstance(entry, dict) or not {"environment", "cron"} <= set(entry):
            raise ConfigError(f"{at} must be a mapping with an environment and a cron")
        unknown = sorted(set(entry) - _SCHEDULE_KEYS)
        if unknown:
            raise ConfigError(f"{at} has unknown keys {unknown}; known keys: "
                              f"{sorted(_SCHEDULE_KEYS)}")
        environment = environments.get(str(entry["environment"]))
        if environment is None:
            raise ConfigError(f"{at}: unknown environment {entry['environment']!r}")
        branch = entry.get("branch") or environment.default_branch
        description = entry.get("description")
        if not isinstance(branch, str) or (description is not None
                                           and not isinstance(description, str)):
            raise ConfigError(f"{at}: branch and description must be strings")
        try:
            # Checked as a console user's branch would be: it reaches the playbook as data.
            branch = check_branch(branch)
            description = check_description(description)
            expression = cron.parse(entry["cron"])
        except (InputError, cron.CronError) as exc:
            raise ConfigError(f"{at}: {exc}") from None
        schedule = Schedule(environment=environment.name, branch=branch, cron=expression,
                            description=description)
        if any(other.key == schedule.key for other in schedules):
            raise ConfigError(f"{at} is given twice")
        schedules.append(schedule)
    return tuple(schedules)


def _commands(environment: str, data: Any, where: Path) -> tuple[Command, ...]:
    """The allow-list: each entry a name and a fixed manage.py command line, checked here with
    the rules playbooks/manage.yml applies, so a bad entry stops the console from starting."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{where}: commands of environment {environment} must be a list of "
                          "{name, command, dry_run} mappings")
    commands: list[Command] = []
    for number, entry in enumerate(data, 1):
        at = f"{where}: commands entry {number} of environment {environment}"
        if not isinstance(entry, dict) or not {"name", "command"} <= set(entry):
            raise ConfigError(f"{at} must be a mapping with a name and a command, not {entry!r}")
        unknown = sorted(set(entry) - _COMMAND_KEYS)
        if unknown:
            raise ConfigError(f"{at} has unknown keys {unknown}; known keys: "
                              f"{sorted(_COMMAND_KEYS)}")
        name = entry["name"]
        if not isinstance(name, str) or not COMMAND_NAME.match(name):
            raise ConfigError(f"{at}: name {name!r} must be letters, digits, '.', '_' or '-' "
                              "(starting with a letter or digit, at most 64)")
        if any(command.name == name for command in commands):
            raise ConfigError(f"{at}: the name {name!r} is given twice")
        try:
            manage_command.parse_command(entry["command"])
        except manage_command.CommandError as exc:
            raise ConfigError(f"{at} ({name}): {exc}") from None
        dry_run = entry.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ConfigError(f"{at} ({name}): dry_run must be true or false, not {dry_run!r}")
        commands.append(Command(name=name, command=entry["command"], dry_run=dry_run))
    return tuple(commands)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the file; a ConfigError names the first problem found."""
    where = Path(path).expanduser().resolve()
    try:
        data = yaml.safe_load(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no console configuration at {where} (give --config FILE or set "
                          "SLIPWAY_CONSOLE_CONFIG)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {where}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with an 'environments' key")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known keys: {sorted(_TOP_KEYS)}")
    base = where.parent
    environments_data = data.get("environments")
    if not isinstance(environments_data, dict) or not environments_data:
        raise ConfigError(f"{where}: 'environments' must name at least one environment")
    environments = {str(name): _environment(name, value, base, where)
                    for name, value in environments_data.items()}
    history_db = data.get("history_db")
    if history_db is not None:
        if not isinstance(history_db, str) or not history_db:
            raise ConfigError(f"{where}: history_db must be an SQLite path or a database URL")
        if "://" not in history_db:
            history_db = str(_path(base, history_db, "history_db", where))
    ansible_config = None
    if data.get("ansible_config") is not None:
        ansible_config = _path(base, data["ansible_config"], "ansible_config", where)
        if not ansible_config.is_file():
            raise ConfigError(f"{where}: ansible_config {ansible_config} does not exist")
    cookie_secure = data.get("cookie_secure", False)
    if not isinstance(cookie_secure, bool):
        raise ConfigError(f"{where}: cookie_secure must be true or false")
    return Config(
        path=where,
        environments=environments,
        console_db=_path(base, data.get("console_db", "console.sqlite3"), "console_db", where),
        history_db=history_db,
        ansible_config=ansible_config,
        cancel_grace_seconds=_number(data, "cancel_grace_seconds", 10.0, where),
        log_flush_interval=_number(data, "log_flush_interval", 0.25, where, 0.01),
        log_poll_interval=_number(data, "log_poll_interval", 0.1, where, 0.01),
        session_hours=_number(data, "session_hours", 12.0, where, 0.01),
        cookie_secure=cookie_secure,
        runner_dir=(_path(base, data["runner_dir"], "runner_dir", where)
                    if data.get("runner_dir") else None),
        login_max_failures=int(_number(data, "login_max_failures", 5, where)),
        login_account_max_failures=int(_number(data, "login_account_max_failures", 20, where)),
        login_window_seconds=_number(data, "login_window_seconds", 900.0, where, 1.0),
        max_body_bytes=int(_number(data, "max_body_bytes", 1048576, where, 1024)),
        schedules=_schedules(data.get("schedules"), environments, where),
        schedule_tick=_number(data, "schedule_tick", 1.0, where, 0.05),
        public_url=_public_url(data.get("public_url"), where),
    )
