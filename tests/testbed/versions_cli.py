"""The command line of the test bed's app writers (app_versions.py, fastapi_app.py): write each
version of an app into a directory and print where each went."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def run(doc: str, write_versions: Callable[[Path], dict[str, Path]], versions: str,
        argv: list[str] | None = None) -> int:
    """``doc``'s first paragraph describes the command; ``versions`` names what it writes
    (such as "v1/ to v3/")."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("outdir", type=Path, help=f"directory that receives {versions}")
    args = parser.parse_args(argv)
    for version, tree in write_versions(args.outdir).items():
        print(f"{version} {tree}")
    return 0
