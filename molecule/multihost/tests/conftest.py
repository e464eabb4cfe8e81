"""The test-bed tools (tests/testbed) and the collection's plugins on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
for path in (PROJECT / "tests" / "testbed", PROJECT / ".cache" / "collections"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
