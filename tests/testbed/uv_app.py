"""Write the example app as a uv project: a pyproject.toml and a uv.lock that uv makes from PyPI.

    python tests/testbed/uv_app.py OUTDIR

OUTDIR/uv-app       examples/app without requirements.txt, with a pyproject.toml whose
                    [project] dependencies are requirements.txt's ([tool.uv] package = false)
                    and a uv.lock resolved from PyPI now, by the uv of this interpreter's
                    environment (pinned in requirements-dev.txt);
OUTDIR/uv-app.json  the package the lock holds back (below) and its two versions.

The lock is made here rather than committed: a committed lock would go stale as PyPI moves on,
and this one is always what `uv lock` makes today. So that a deploy which re-resolved
pyproject.toml instead of installing the lock would show, the lock holds one package that the
app gets only through Django, sqlparse, back at an older release than a resolution picks
(`uv lock --upgrade-package sqlparse==HELD`); the lock stays valid (`uv lock --locked` passes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import uv
from app_versions import EXAMPLE_APP, copy_tree

HELD_PACKAGE = "sqlparse"
# Older than any sqlparse a resolution picks today, and one Django 5.2 accepts (>=0.3.1).
HELD_VERSION = "0.5.3"
PROJECT = """\
[project]
name = "shop"
version = "1.0"
requires-python = ">=3.11"
dependencies = [
{dependencies}]

[tool.uv]
package = false
"""


def requirements(path: Path) -> list[str]:
    """The requirement lines of a flat requirements file (no includes or options)."""
    lines = [line.split(" #", 1)[0].strip() for line in path.read_text().splitlines()]
    found = [line for line in lines if line and not line.startswith("#")]
    options = [line for line in found if line.startswith("-")]
    if options:
        raise SystemExit(f"{path} has options ({', '.join(options)}): "
                         "update tests/testbed/uv_app.py to the example app")
    return found


def locked_version(tree: Path, package: str) -> str:
    lock = tomllib.loads((tree / "uv.lock").read_text())
    versions = [entry["version"] for entry in lock["package"] if entry["name"] == package]
    if len(versions) != 1:
        raise SystemExit(f"uv.lock holds {len(versions)} versions of {package}: {versions}")
    return versions[0]


def run_uv(tree: Path, *args: str) -> None:
    # --no-config: this machine's uv settings do not reach the lock; PyPI is uv's default index.
    subprocess.run([uv.find_uv_bin(), *args, "--no-config", "--quiet", "--python",
                    sys.executable, "--directory", str(tree)], check=True)


def write_uv_app(outdir: Path, source: Path = EXAMPLE_APP) -> dict:
    """Write OUTDIR/uv-app and OUTDIR/uv-app.json (replacing them); return what the json says."""
    outdir.mkdir(parents=True, exist_ok=True)
    tree = outdir / "uv-app"
    if tree.exists():
        shutil.rmtree(tree)
    copy_tree(source, tree)
    (tree / "requirements.txt").unlink()
    dependencies = requirements(source / "requirements.txt")
    (tree / "pyproject.toml").write_text(PROJECT.format(
        dependencies="".join(f"    {json.dumps(line)},\n" for line in dependencies)))
    run_uv(tree, "lock")
    resolved = locked_version(tree, HELD_PACKAGE)
    run_uv(tree, "lock", "--upgrade-package", f"{HELD_PACKAGE}=={HELD_VERSION}")
    run_uv(tree, "lock", "--locked")
    held = {"package": HELD_PACKAGE, "locked": locked_version(tree, HELD_PACKAGE),
            "resolved": resolved}
    if held["locked"] != HELD_VERSION or held["resolved"] == HELD_VERSION:
        raise SystemExit(f"the lock does not hold {HELD_PACKAGE} back: {held}")
    for path in (tree / "pyproject.toml", tree / "uv.lock"):
        path.chmod(0o644)
    (outdir / "uv-app.json").write_text(json.dumps(held, indent=2) + "\n")
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("outdir", type=Path, help="directory that receives uv-app/")
    args = parser.parse_args(argv)
    print(json.dumps(write_uv_app(args.outdir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
