"""The ansible.cfg that Ansible reads, found and read with Ansible's own configuration code.

Ansible's search order: $ANSIBLE_CONFIG (a file, or a directory holding ansible.cfg), then
ansible.cfg in the working directory (unless that directory is world-writable), then
~/.ansible.cfg, then /etc/ansible/ansible.cfg. Values are read by ``ansible.config.manager``
when ansible-core is importable (as Ansible parses the file: no interpolation, ``;`` starts an
inline comment), else by configparser set up the same way.
"""

from __future__ import annotations

import configparser
import functools
import os
import stat
from pathlib import Path

try:
    from ansible.config.manager import ConfigManager, find_ini_config_file
except ImportError:  # the history CLI without ansible-core
    ConfigManager = None
    find_ini_config_file = None

__all__ = ["ConfigFileError", "cfg_value", "find_ansible_cfg"]

# The name of the definitions registered with Ansible's ConfigManager to read any key with it.
_READER = "slipway.ansible_cfg"


class ConfigFileError(Exception):
    """ansible.cfg exists but cannot be read; the message names the file and the problem."""


def find_ansible_cfg(cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """The ansible.cfg that ansible-playbook started in ``cwd`` (default: the current
    directory) would read, or None when there is none."""
    if cwd is None and find_ini_config_file is not None:
        found = find_ini_config_file()
        return Path(found).resolve() if found else None
    directory = Path(cwd) if cwd is not None else Path.cwd()
    candidates = []
    from_env = os.environ.get("ANSIBLE_CONFIG")
    if from_env is not None:
        path = Path(from_env).expanduser()
        path = directory / path if not path.is_absolute() else path
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    try:
        if not directory.stat().st_mode & stat.S_IWOTH:
            candidates.append(directory / "ansible.cfg")
    except OSError:
        pass
    candidates += [Path("~/.ansible.cfg").expanduser(), Path("/etc/ansible/ansible.cfg")]
    for path in candidates:
        if path.exists() and os.access(path, os.R_OK):
            return path.resolve()
    return None


@functools.cache
def _manager(path: str, _mtime: float) -> ConfigManager:
    try:
        return ConfigManager(conf_file=path)
    except Exception as exc:  # AnsibleOptionsError: not UTF-8, not INI
        raise ConfigFileError(f"cannot read {path}: {exc}") from None


@functools.cache
def _parser(path: str, _mtime: float) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read_string(Path(path).read_text(encoding="utf-8"), source=path)
    except (OSError, UnicodeError, configparser.Error) as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}") from None
    return parser


def cfg_value(cfg: str | os.PathLike[str], section: str, key: str) -> str | None:
    """The raw text of ``key`` in ``[section]`` of the file ``cfg``, stripped; None when it is
    not set (or empty). ConfigFileError when the file cannot be read or parsed."""
    path = str(Path(cfg).resolve())
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}") from None
    if ConfigManager is not None:
        manager = _manager(path, mtime)
        # One definition per key, under a name of its own: threads reading different keys at
        # once never replace each other's.
        reader = f"{_READER}.{section}.{key}"
        manager.initialize_plugin_configuration_definitions("callback", reader, {
            "value": {"type": "str", "ini": [{"section": section, "key": key}]}})
        value, origin = manager.get_config_value_and_origin(
            "value", cfile=path, plugin_type="callback", plugin_name=reader)
        value = value if origin == path else None
    else:
        value = _parser(path, mtime).get(section, key, raw=True, fallback=None)
    text = str(value).strip() if value is not None else ""
    return text or None
