#!/usr/bin/env python3
"""Requests sent and failed during updates and rollbacks, and the cost of a rolling update.

    .venv/bin/python benchmarks/update_rollout.py [--rate 60] [--keep] [--scenarios multihost]

In one run, on this machine's podman test bed (the molecule scenarios' hosts):

1. single host (molecule scenario `update`: one container with nginx, gunicorn, Celery,
   PostgreSQL, Redis): deploy v1, then under load update v1 -> v2, roll back to v1;
2. two app hosts behind a load balancer, with a database host (scenario `multihost`): deploy
   v1, then under load a rolling update v1 -> v2 and a rollback to v1.

The load generator (tests/testbed/loadgen.py) sends GET /health/ to the entry point published
on 127.0.0.1 at a steady rate for the whole playbook run, and for 20 s with nothing running
before the runs (the steady window they are compared with). Reported: requests sent and failed
(connection errors, timeouts, 5xx) per run, the achieved rate, and the wall time of the rolling
update over two app hosts divided by the single-host update's. Results go to
benchmarks/results/update_rollout.json.

Measured 2026-11-23 on the 2-core test machine (one run, 60 req/s asked, nothing else running):

    update    deploy.yml      94.9 s  sent 5692  failed 0  p95  8.7 ms  max 0.82 s
    update    rollback.yml    33.3 s  sent 2000  failed 0  p95  8.5 ms  max 0.88 s
    multihost deploy.yml      68.6 s  sent 4115  failed 0  p95 17.5 ms  max 1.15 s
    multihost rollback.yml    25.3 s  sent 1520  failed 0  p95 13.0 ms  max 0.81 s
    rolling update over 2 app hosts / update of 1 host: 0.72 (goal: under 2)

The scenarios reach their hosts differently: `multihost` over SSH with pipelining, `update`
through `podman exec`, which costs more per task; so the ratio flatters the rolling update, and
what it shows is that the second host adds little: it builds beside the first and the
migrations run once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "testbed"))

from loadgen import LoadGenerator  # noqa: E402

BIN = REPO / ".venv" / "bin"
SCENARIOS = {"update": "slipway-molecule-update", "multihost": "slipway-mh-lb1"}
RUN_TIMEOUT = 1800


def environment(scenario: str | None = None) -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "PY_COLORS": "0",
           "ANSIBLE_FORCE_COLOR": "0"}
    if scenario:
        env["MOLECULE_EPHEMERAL_DIRECTORY"] = str(ephemeral(scenario))
    return env


def ephemeral(scenario: str) -> Path:
    """Where molecule keeps the scenario's inventory and the app versions, for this benchmark."""
    return REPO / ".cache" / "benchmarks" / f"molecule-{scenario}"


def molecule(action: str, scenario: str) -> None:
    ephemeral(scenario).mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN / "molecule"), action, "-s", scenario], cwd=REPO, check=True,
                   env=environment(scenario), timeout=RUN_TIMEOUT)


def entry_url(container: str) -> str:
    port = subprocess.run(["podman", "port", container, "80/tcp"], capture_output=True,
                          text=True, check=True).stdout.split()[0].rsplit(":", 1)[1]
    return f"http://127.0.0.1:{port}/health/"


def steady(scenario: str, rate: float, seconds: float = 20.0) -> dict:
    """The same load with nothing running: the window the runs are compared with."""
    summary = LoadGenerator(entry_url(SCENARIOS[scenario]), rate=rate, duration=seconds,
                            workers=8, timeout=30.0).start().wait()
    row = {"scenario": scenario, "playbook": "(steady, nothing running)", "args": [],
           "seconds": seconds, "sent": summary["sent"], "failed": summary["failed"],
           "other_status": summary["other_status"], "rate": summary["achieved_rate"],
           "latency_ms": summary["latency_ms"], "releases": summary["releases"]}
    print_row(row)
    return row


def print_row(row: dict) -> None:
    latency = row["latency_ms"]
    print(f"{row['scenario']:9} {row['playbook'][:24]:24} {row['seconds']:7.1f} s  sent "
          f"{row['sent']:6}  failed {row['failed']:3}  other {row['other_status']:3}  "
          f"{row['rate']:5.1f} req/s  p50 {latency['p50']} ms  p99 {latency.get('p99')} ms  "
          f"max {latency['max']} ms", flush=True)


def timed_run(scenario: str, playbook: str, rate: float, *extra: str) -> dict:
    inventory = ephemeral(scenario) / "inventory"
    load = LoadGenerator(entry_url(SCENARIOS[scenario]), rate=rate, duration=RUN_TIMEOUT,
                         workers=8, timeout=30.0).start()
    started = time.monotonic()
    try:
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory),
                                 str(REPO / "playbooks" / playbook), *extra], cwd=REPO,
                                capture_output=True, text=True, env=environment(scenario),
                                timeout=RUN_TIMEOUT)
    finally:
        summary = load.stop()
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-2000:])
        raise SystemExit(f"{scenario} {playbook} failed")
    row = {"scenario": scenario, "playbook": playbook, "args": list(extra),
           "seconds": round(seconds, 1), "sent": summary["sent"], "failed": summary["failed"],
           "other_status": summary["other_status"], "rate": summary["achieved_rate"],
           "latency_ms": summary["latency_ms"], "releases": summary["releases"]}
    print_row(row)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second")
    parser.add_argument("--keep", action="store_true", help="keep the containers afterwards")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS),
                        help="the scenarios to run (both by default)")
    args = parser.parse_args()
    rows = []
    for scenario in args.scenarios:
        for action in ("destroy", "create", "prepare", "converge"):
            molecule(action, scenario)
        versions = ephemeral(scenario) / "versions"
        try:
            rows.append(steady(scenario, args.rate))
            rows.append(timed_run(scenario, "deploy.yml", args.rate,
                                  "-e", f"app_source={versions / 'v2'}"))
            rows.append(timed_run(scenario, "rollback.yml", args.rate))
        finally:
            if not args.keep:
                molecule("destroy", scenario)
    single = next((row for row in rows if row["scenario"] == "update"
                   and row["playbook"] == "deploy.yml"), None)
    rolling = next((row for row in rows if row["scenario"] == "multihost"
                    and row["playbook"] == "deploy.yml"), None)
    ratio = rolling["seconds"] / single["seconds"] if single and rolling else None
    if ratio is not None:
        print(f"\nrolling update over 2 app hosts / update of 1 host: {ratio:.2f} (goal: under 2)")
    print(f"failed requests in all runs: {sum(row['failed'] + row['other_status'] for row in rows)}"
          " (goal: 0)")
    out = REPO / "benchmarks" / "results" / "update_rollout.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "rolling_over_single": ratio and round(ratio, 2),
                               "rate_asked": args.rate}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
