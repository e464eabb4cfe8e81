"""Make the test-bed tools (tests/testbed/*.py) importable by their module names."""

from __future__ import annotations

import sys
from pathlib import Path

TESTBED = Path(__file__).resolve().parents[2] / "testbed"
if str(TESTBED) not in sys.path:
    sys.path.insert(0, str(TESTBED))
