"""Copies of the example app (examples/app) that the deploy benchmarks deploy to the demo host."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def example_copy(directory: Path, append: dict[str, str] | None = None) -> Path:
    """examples/app copied to `directory`, each file of `append` (relative path: text) given the
    text at its end (a new file when missing)."""
    shutil.copytree(ROOT / "examples" / "app", directory,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for relative, text in (append or {}).items():
        with open(directory / relative, "a") as handle:
            handle.write(text)
    return directory


def code_only_copy(directory: Path) -> Path:
    """examples/app with one edited file: a new release with the same dependencies and settings."""
    return example_copy(directory, {"config/urls.py": f"\n# benchmark change {time.time()}\n"})
