"""Write the example app as a project that hard-codes its file settings, for the default scenario.

    python tests/testbed/static_app.py OUTDIR

OUTDIR/static-app  examples/app whose settings hard-code STATIC_ROOT = BASE_DIR /
                   "static-collected" and MEDIA_ROOT = BASE_DIR / "media" (as real projects do),
                   with its own static files in STATICFILES_DIRS (assets/slipway-check.txt).
The output is deterministic (same bytes and modes each run), so its release id is stable.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "app"
SKIPPED = ("__pycache__", "*.pyc", "*.sqlite3", ".venv", "venv", ".env", "static", "media",
           "static-collected")
SETTINGS = '''

# Hard-coded, as real projects do (the environment's STATIC_ROOT and MEDIA_ROOT are ignored).
STATIC_ROOT = BASE_DIR / "static-collected"
STATICFILES_DIRS = [BASE_DIR / "assets"]
MEDIA_ROOT = BASE_DIR / "media"
'''
ASSET = "static file of the static-app variant\n"


def write(outdir: Path) -> Path:
    target = outdir / "static-app"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(EXAMPLE_APP, target, ignore=shutil.ignore_patterns(*SKIPPED))
    settings = target / "config" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS)
    (target / "assets").mkdir()
    (target / "assets" / "slipway-check.txt").write_text(ASSET)
    for path in sorted(target.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    print(write(parser.parse_args().outdir))


if __name__ == "__main__":
    main()
