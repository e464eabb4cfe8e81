"""The deploy history store, importable as ``slipway.history_store``.

The one implementation lives in the collection (``plugins/plugin_utils/history_store.py``), where
the callback plugin imports it; this module finds that file and takes its place, so that the
``slipway-history`` command and the web console use the very same code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

_RELATIVE = Path("ansible_collections/slipway/django/plugins/plugin_utils/history_store.py")


def _candidates() -> list[Path]:
    # An editable install from the repository: src/slipway/ -> the collection root.
    paths = [Path(__file__).resolve().parents[2] / "plugins" / "plugin_utils" / "history_store.py"]
    configured = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get(
        "ANSIBLE_COLLECTIONS_PATHS", "")
    roots = [Path(entry).expanduser() for entry in configured.split(os.pathsep) if entry]
    roots += [Path.home() / ".ansible" / "collections", Path("/usr/share/ansible/collections")]
    roots += [Path(entry) for entry in sys.path if entry]
    paths += [root / _RELATIVE for root in roots]
    return paths


def _load() -> None:
    for path in _candidates():
        if path.is_file():
            spec = importlib.util.spec_from_file_location(__name__, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[__name__] = module
            spec.loader.exec_module(module)
            return
    raise ImportError("cannot find the slipway.django collection's history store "
                      f"({_RELATIVE}); install the collection or set ANSIBLE_COLLECTIONS_PATH")


_load()
