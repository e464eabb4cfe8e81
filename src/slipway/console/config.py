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
    environments:
      staging:
        inventory: inventories/staging
        deploy_playbook: playbooks/deploy.yml      # default: this collection's
        rollback_playbook: playbooks/rollback.yml  # default: this collection's
        unlock_playbook: playbooks/unlock.yml      # default: this collection's
        manage_playbook: playbooks/manage.yml      # default: this collection's
        logs_playbook: playbooks/logs.yml          # default: this collection's (app logs)
        default_branch: main
        requires_approval: false
        commands:                                  # one-off manage.py commands it offers
          - name: backfill_po                      # what the console shows and the API names
            command: backfill_po --days 7 --limit 10   # a fixed command line, never edited
            dry_run: true                          # offer a "Dry run" (default: false)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slipway import manage_command
from slipway.collection import CollectionNotFound, collection_root

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
class Environment:
    name: str
    inventory: Path
    deploy_playbook: Path
    rollback_playbook: Path
    unlock_playbook: Path
    manage_playbook: Path
    logs_playbook: Path
    default_branch: str = "main"
    requires_approval: bool = False
    commands: tuple[Command, ...] = ()

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

    @property
    def directory(self) -> Path:
        return self.path.parent

    def work_dir(self) -> Path:
        """Where ansible-runner keeps a run's private data while it goes (removed after)."""
        return self.runner_dir or self.console_db.parent / "runner"


_TOP_KEYS = {"environments", "console_db", "history_db", "ansible_config", "cancel_grace_seconds",
             "log_flush_interval", "log_poll_interval", "session_hours", "cookie_secure",
             "runner_dir", "login_max_failures", "login_account_max_failures",
             "login_window_seconds", "max_body_bytes"}
_ENV_KEYS = {"inventory", "deploy_playbook", "rollback_playbook", "unlock_playbook",
             "manage_playbook", "logs_playbook", "default_branch", "requires_approval", "commands"}
_COMMAND_KEYS = {"name", "command", "dry_run"}


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
                         ("logs_playbook", "logs.yml")):
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
    return Environment(name=name, inventory=inventory, default_branch=branch,
                       requires_approval=approval,
                       commands=_commands(name, data.get("commands", []), where), **paths)


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
    )
