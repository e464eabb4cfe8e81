"""Keep test runs out of the user's deploy history: every ansible-playbook a test starts
records into a throw-away store unless a test chooses its own."""

from __future__ import annotations

import os
import tempfile

_STORE_DIR = tempfile.mkdtemp(prefix="slipway-test-history-")
os.environ["SLIPWAY_HISTORY_DB"] = os.path.join(_STORE_DIR, "history.sqlite3")
