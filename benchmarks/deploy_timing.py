#!/usr/bin/env python3
"""Wall time of deploy.yml on the demo host: first run, no-change run, code-only run.

    .venv/bin/python benchmarks/deploy_timing.py [--keep]

Destroys the demo container first (the first run starts from a fresh host; the controller's
wheel cache is kept, as it would be on an operator's machine), then times three runs of
`tests/testbed/demo.sh` one after the other and prints each time and its ratio to the first.
The code-only run deploys a copy of the example app with one changed Python file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from example_copies import code_only_copy

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "testbed" / "demo.sh"


def timed_run(*extra: str) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(["bash", str(DEMO), *extra], cwd=ROOT, capture_output=True,
                            text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"deploy failed ({' '.join(extra) or 'default'})")
    recap = [line for line in result.stdout.splitlines() if "changed=" in line][-1]
    return elapsed, recap.split(":", 1)[1].strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the current demo host")
    args = parser.parse_args()
    if not args.keep:
        subprocess.run(["podman", "rm", "-f", "-t", "10", "slipway-demo"], capture_output=True)

    runs = {}
    runs["first"] = timed_run()
    runs["no_change"] = timed_run()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
        source = code_only_copy(Path(scratch) / "app")
        runs["code_only"] = timed_run("-e", f"app_source={source}")

    first = runs["first"][0]
    report = {name: {"seconds": round(seconds, 1), "ratio_to_first": round(seconds / first, 3),
                     "recap": recap} for name, (seconds, recap) in runs.items()}
    print(json.dumps(report, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "deploy_timing.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
