"""The rules of one-off manage.py command lines, importable as ``slipway.manage_command``.

The one implementation lives in the collection (``plugins/module_utils/manage_command.py``),
where the manage_command module imports it (modules take their module_utils to the targets);
this module loads that file from the collection (``slipway.collection``), so that the console
checks its allow-list with the very same rules.
"""

from __future__ import annotations

import importlib.util
import sys

from slipway.collection import CollectionNotFound, collection_root


def _load() -> None:
    try:
        path = collection_root() / "plugins" / "module_utils" / "manage_command.py"
    except CollectionNotFound as exc:
        raise ImportError(str(exc)) from None
    spec = importlib.util.spec_from_file_location(__name__, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ImportError(f"cannot find the slipway.django collection's {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[__name__] = module
    spec.loader.exec_module(module)


_load()
