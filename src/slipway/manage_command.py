"""The rules of one-off manage.py command lines, importable as ``slipway.manage_command``.

The one implementation lives in the collection (``plugins/module_utils/manage_command.py``),
where the manage_command module imports it; this module loads that file from the collection
the history store came from, so that the console checks its allow-list with the very same
rules.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from slipway import history_store

_PATH = (Path(history_store.__file__).resolve().parents[2] / "plugins" / "module_utils"
         / "manage_command.py")


def _load() -> None:
    spec = importlib.util.spec_from_file_location(__name__, _PATH)
    if spec is None or spec.loader is None or not _PATH.is_file():
        raise ImportError(f"cannot find the slipway.django collection's {_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    spec.loader.exec_module(module)


_load()
