#!/usr/bin/env python3
"""What users see while a release changes: latency and failures under a steady load, side by side
with a window where nothing runs; and how long deploys take.

    .venv/bin/python benchmarks/zero_wait.py [--rate 40] [--keep]

In one run, on the demo host (tests/testbed/demo.sh: one container with nginx, the app's two
web slots, Celery, PostgreSQL and Redis), while tests/testbed/loadgen.py sends GET /health/ to
127.0.0.1 at a steady rate and records every request's latency:

1. steady: 20 s with nothing running;
2. update: deploy.yml of a code-only change (a copy of the example app with one edited file);
3. rollback: rollback.yml back to the release before;
4. broken: deploy.yml of a copy whose every page answers 500 (a middleware raises): the deploy
   must fail, and no request may reach it.

Then the deploy times: the first deploy on a fresh demo host (unless --keep), a rerun with no
change, and the code-only update, each with its ratio to the first. Results go to
benchmarks/results/zero_wait.json. Never a timing assertion: the figures are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "testbed"))

from example_copies import code_only_copy, example_copy  # noqa: E402
from loadgen import LoadGenerator  # noqa: E402

DEMO = ROOT / "tests" / "testbed" / "demo.sh"
URL = f"http://127.0.0.1:{os.environ.get('SLIPWAY_DEMO_HTTP_PORT', '8080')}/health/"
RESULTS = ROOT / "benchmarks" / "results" / "zero_wait.json"
ENV = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
       "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}

BROKEN_MIDDLEWARE = '''
class Broken:
    """Every page of this release answers 500 (a release the health gate must refuse)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise RuntimeError("broken on purpose")
'''


def run(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    return time.monotonic() - started, result


def deploy(*extra: str) -> tuple[float, subprocess.CompletedProcess]:
    return run(["bash", str(DEMO), *extra])


def rollback() -> tuple[float, subprocess.CompletedProcess]:
    return run(["ansible-playbook", "-i", "inventories/demo", "playbooks/rollback.yml"])


def recap(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.splitlines() if "changed=" in line]
    return lines[-1].split(":", 1)[1].strip() if lines else ""


def checked(label: str, outcome: tuple[float, subprocess.CompletedProcess], ok: bool = True):
    seconds, result = outcome
    if (result.returncode == 0) != ok:
        sys.stderr.write(result.stdout[-6000:] + result.stderr[-3000:])
        raise SystemExit(f"{label}: the playbook {'failed' if ok else 'passed'} (rc "
                         f"{result.returncode})")
    return seconds, result


def under_load(rate: float, action) -> tuple[dict, tuple[float, subprocess.CompletedProcess]]:
    load = LoadGenerator(URL, rate=rate, duration=1800, timeout=30, workers=16)
    load.start()
    try:
        outcome = action()
    finally:
        summary = load.stop()
    return summary, outcome


def window(name: str, summary: dict, seconds: float | None = None) -> dict:
    latency = summary["latency_ms"]
    elapsed = seconds if seconds is not None else summary["elapsed"]
    return {"window": name, "seconds": round(elapsed, 1),
            "sent": summary["sent"], "failed": summary["failed"] + summary["other_status"],
            "p50_ms": latency["p50"], "p99_ms": latency["p99"], "max_ms": latency["max"],
            "releases": {release: seen["count"] for release, seen in summary["releases"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (40)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the demo host as it is (no first-deploy time)")
    args = parser.parse_args()

    times = {}
    if not args.keep:
        subprocess.run(["podman", "rm", "-f", "-t", "10", "slipway-demo"], capture_output=True)
    seconds, result = checked("first deploy", deploy())
    if not args.keep:
        times["first"] = {"seconds": round(seconds, 1), "recap": recap(result)}
    seconds, result = checked("no-change rerun", deploy())
    times["no_change"] = {"seconds": round(seconds, 1), "recap": recap(result)}

    windows = []
    load = LoadGenerator(URL, rate=args.rate, duration=20, timeout=30, workers=16)
    load.start()
    windows.append(window("steady (20 s, nothing running)", load.wait()))

    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
        update = code_only_copy(Path(scratch) / "update")
        summary, (seconds, result) = under_load(
            args.rate, lambda: checked("update", deploy("-e", f"app_source={update}")))
        windows.append(window("deploy.yml, code-only update", summary, seconds))
        times["code_only"] = {"seconds": round(seconds, 1), "recap": recap(result)}

        summary, (seconds, _) = under_load(args.rate, lambda: checked("rollback", rollback()))
        windows.append(window("rollback.yml", summary, seconds))

        broken = example_copy(Path(scratch) / "broken", {
            "config/broken.py": BROKEN_MIDDLEWARE,
            "config/settings.py": '\nMIDDLEWARE = ["config.broken.Broken", *MIDDLEWARE]\n'})
        summary, (seconds, result) = under_load(
            args.rate, lambda: checked("broken", deploy("-e", f"app_source={broken}"), ok=False))
        broken_window = window("deploy of a release whose every page answers 500", summary, seconds)
        failure = [line.strip() for line in result.stdout.splitlines() if "failed on" in line]
        broken_window["deploy_failed_saying"] = failure[-1][:600] if failure else ""
        windows.append(broken_window)

    first = times.get("first", {}).get("seconds")
    for entry in times.values():
        if first:
            entry["ratio_to_first"] = round(entry["seconds"] / first, 3)
    steady_p99 = windows[0]["p99_ms"] or 0
    for entry in windows[1:]:
        entry["p99_over_steady"] = round(entry["p99_ms"] / steady_p99, 2) if steady_p99 else None

    report = {"rate": args.rate, "windows": windows, "deploy_times": times}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'window':52} {'s':>6} {'sent':>6} {'failed':>6} {'p50':>8} {'p99':>8} {'max':>9}")
    for entry in windows:
        print(f"{entry['window']:52} {entry['seconds']:6} {entry['sent']:6} {entry['failed']:6} "
              f"{entry['p50_ms']:8} {entry['p99_ms']:8} {entry['max_ms']:9}")
    print(json.dumps(times, indent=2))


if __name__ == "__main__":
    main()
