"""Shared by every test directory.

- Keep test runs out of the user's deploy history: every ansible-playbook a test starts records
  into a throw-away store unless a test chooses its own.
- Make ansible_collections.slipway.django importable: `make venv` links the checkout there.
- Make this checkout's `slipway` package (src/) the one imported, here and in every process a
  test starts (ansible-playbook's callback, slipway-console, slipway-history), whichever
  checkout the virtualenv's editable install points at.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_STORE_DIR = tempfile.mkdtemp(prefix="slipway-test-history-")
os.environ["SLIPWAY_HISTORY_DB"] = os.path.join(_STORE_DIR, "history.sqlite3")

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".cache" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

SOURCE = str(ROOT / "src")
if SOURCE not in sys.path:
    sys.path.insert(0, SOURCE)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [SOURCE, *(entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
               if entry and entry != SOURCE)])
