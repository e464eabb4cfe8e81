"""The deploy history: its store (``store``), the writer the callback records a run with
(``writer``), the secret finder that keeps secrets out of it (``secrets``) and the
``slipway-history`` command (``cli``).

Where the history is kept is decided here, once, for the callback, the command and the console:
see ``resolve_store_url``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from slipway.ansible_cfg import cfg_value, find_ansible_cfg
from slipway.history.store import default_store_url

__all__ = ["CFG_KEY", "CFG_SECTION", "ENV_VARIABLE", "main", "resolve_store_url"]

# The deploy_history callback's `db` option: its environment variable and ansible.cfg key.
ENV_VARIABLE = "SLIPWAY_HISTORY_DB"
CFG_SECTION = "callback_deploy_history"
CFG_KEY = "db"


def _is_relative_path(value: str) -> bool:
    """A plain SQLite path (not a URL, not ~user) that is not absolute."""
    return "://" not in value and not value.startswith("~") and not Path(value).is_absolute()


def resolve_store_url(explicit: str | None = None, *,
                      config_file: str | os.PathLike[str] | None = None,
                      cwd: str | os.PathLike[str] | None = None,
                      environ: Mapping[str, str] | None = None) -> str:
    """The deploy history store: an SQLite path or a database URL.

    In this order: ``explicit`` (a command's --db, the console's history_db); the environment
    variable SLIPWAY_HISTORY_DB; the ``db`` key of the ``[callback_deploy_history]`` section of
    ``config_file`` (default: the ansible.cfg that Ansible started in ``cwd`` would read), where
    a relative SQLite path is relative to that file's directory; and last the SQLite file
    ``slipway/history.sqlite3`` under $XDG_DATA_HOME (default ~/.local/share).
    """
    if explicit:
        return explicit
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VARIABLE):
        return environ[ENV_VARIABLE]
    cfg = Path(config_file) if config_file else find_ansible_cfg(cwd)
    if cfg is not None:
        configured = cfg_value(cfg, CFG_SECTION, CFG_KEY)
        if configured:
            if _is_relative_path(configured):
                return str(cfg.resolve().parent / configured)
            return configured
    return default_store_url()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``slipway-history`` command (kept here: the installed script calls this name)."""
    from slipway.history.cli import main as cli_main

    return cli_main(argv)
