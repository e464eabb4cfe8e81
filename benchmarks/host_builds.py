#!/usr/bin/env python3
"""Builds on the hosts: release virtualenvs by pip and by uv, first deploys with a cold and a warm
wheel cache.

    .venv/bin/python benchmarks/host_builds.py [--rounds 3]

In one run, on the demo host (`tests/testbed/demo.sh`, container `slipway-demo`, reached over
SSH like a real server), each deploy a run of demo.sh with Ansible's JSON callback, which gives
every task's own time:

1. first deploy, cold: a fresh demo container (booted before the clock starts), nothing cached
   on it; then its build cache /var/cache/slipway/demo/ (build virtualenv, wheelhouse archive,
   uv's cache) is saved;
2. first deploy, warm: another fresh container, the saved cache copied in before the deploy;
3. code-only updates (a copy of the example app with one changed file, the same requirements)
   with `-e app_uv=false` (pip makes the release's virtualenv: before) and `-e app_uv=true`
   (uv: after), interleaved over ROUNDS rounds in alternating order (pip uv, uv pip, ...), after
   one untimed update in each mode so that both wheelhouses exist.

The demo container is replaced (twice): what was deployed on it is lost. The deploys record into
a history of their own (SLIPWAY_HISTORY_DB in a scratch directory), not the operator's.

Reported: each playbook's wall time; the virtualenv's own time (pip: the one task that makes the
virtualenv and installs into it; uv: the task that makes it plus the task that installs into it,
and separately the check that the host's uv is installed); the wheel build task; the medians
and the ratios uv/pip and warm/cold. Results go to benchmarks/results/host_builds.json.

Measured 2026-11-25 on the 2-core test machine, one run with --rounds 3, while a CI run
(molecule scenarios) shared the machine: load average 3 to 8.5, noted before each run.

    run                       wall     virtualenv                 wheel build  load
    first deploy, cold cache  517.9 s  uv 16.0 s (+ uv 25.5 s)    20.5 s       7.3
    first deploy, warm cache  431.5 s  uv  3.3 s (+ uv 21.3 s)     2.2 s       8.2
    round 1 app_uv=false      167.3 s  pip 23.1 s                  1.3 s       8.5
    round 1 app_uv=true       147.4 s  uv  3.0 s (+ uv 4.0 s)      1.0 s       6.1
    round 2 app_uv=true       139.1 s  uv  2.9 s (+ uv 2.8 s)      1.4 s       7.0
    round 2 app_uv=false      132.7 s  pip 19.9 s                  1.3 s       6.0
    round 3 app_uv=false      129.8 s  pip 18.5 s                  1.0 s       3.3
    round 3 app_uv=true       135.9 s  uv  2.1 s (+ uv 2.7 s)      1.0 s       4.4
    ("+ uv": the task that checks, or on a new host installs, uv itself)

    code-only update, medians: wall pip 132.7 s, uv 139.1 s: uv/pip 1.05
                               virtualenv pip 19.9 s, uv 2.85 s: uv/pip 0.14
                               (0.28 counting uv's own 2.8 s check)
    first deploy: wall warm/cold 0.83; wheel build 20.5 s -> 2.2 s, virtualenv 16.0 -> 3.3 s

uv makes the virtualenv 7 times faster, but that is about 14 s of a code-only update that takes
130-170 s on this loaded machine (the SSH round trips of some 90 tasks, Django's checks,
collectstatic, the restarts and the health gate): the wall times of the two modes differ by
less than the load moves them from one run to the next (uv/pip 1.05 is noise, not a cost). Of a
first deploy, the warm cache saves the wheel build and most of the virtualenv's time (uv's
cache): about 31 s together. The rest of the 86 s between the two runs is the load, so the 0.83
overstates the cache. The check that uv is installed (an ansible.builtin.pip run on every
deploy) costs about as much as uv's whole install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tests" / "testbed" / "demo.sh"
CONTAINER = "slipway-demo"
CACHE_PARENT = "/var/cache/slipway"
CACHE_NAME = "demo"
RUN_TIMEOUT = 1800
# The tasks of roles/release/tasks/build.yml and wheels.yml timed on their own.
TASKS = {
    "pip_venv": ["Install the release's dependencies with pip, from the wheelhouse only (no uv)"],
    "uv_venv": ["Create the release's virtualenv with uv",
                "Install the release's dependencies with uv, from the wheelhouse only"],
    "uv_install_check": [
        "Install uv from the wheelhouse (the release's virtualenv is made with it)"],
    "wheel_build": ["Build the app's wheels with the hosts' Python"],
}


def timestamp(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def seconds_between(start: str, end: str) -> float:
    return (timestamp(end) - timestamp(start)).total_seconds()


def task_seconds(report: dict) -> dict[str, float]:
    """Seconds spent in each task of the run, by task name (summed when a name repeats)."""
    totals: dict[str, float] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            duration = task["task"].get("duration") or {}
            if "start" in duration and "end" in duration:
                name = task["task"]["name"].split(" : ", 1)[-1]  # without "role : "
                totals[name] = totals.get(name, 0.0) + seconds_between(duration["start"],
                                                                       duration["end"])
    return totals


def deploy(label: str, *extra: str) -> dict:
    """One timed run of demo.sh (deploy.yml on the demo host); its times and recap."""
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0"}
    load = os.getloadavg()[0]
    started = time.monotonic()
    result = subprocess.run(["bash", str(DEMO), *extra], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-6000:] + result.stderr[-3000:])
        raise SystemExit(f"deploy failed: {label}")
    start = re.search(r"^\{", result.stdout, re.MULTILINE)
    report, _ = json.JSONDecoder().raw_decode(result.stdout[start.start():])
    tasks = task_seconds(report)
    row = {"run": label, "args": list(extra), "wall_s": round(wall, 1),
           "load_before": round(load, 1), "recap": report["stats"].get(CONTAINER, {})}
    for key, names in TASKS.items():
        found = [tasks[name] for name in names if name in tasks]
        row[f"{key}_s"] = round(sum(found), 2) if found else None
    print(f"{label:24} wall {row['wall_s']:6.1f} s  pip venv {row['pip_venv_s']}  uv venv "
          f"{row['uv_venv_s']}  uv check {row['uv_install_check_s']}  wheel build "
          f"{row['wheel_build_s']}  (load {row['load_before']})", flush=True)
    return row


def podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=True, **kwargs)


def fresh_host() -> None:
    """A new demo container, booted, with nothing deployed (`--list-hosts` runs no task)."""
    subprocess.run(["podman", "rm", "-f", "-t", "10", CONTAINER], capture_output=True)
    subprocess.run(["bash", str(DEMO), "--list-hosts"], cwd=REPO, check=True,
                   capture_output=True, timeout=RUN_TIMEOUT)


def code_change(scratch: Path, label: str) -> Path:
    """A copy of the example app with one changed file: a new release, the same requirements."""
    source = scratch / label
    shutil.copytree(REPO / "examples" / "app", source, ignore=shutil.ignore_patterns("__pycache__"))
    with (source / "config" / "urls.py").open("a") as handle:
        handle.write(f"\n# benchmark change {label} {time.time()}\n")
    return source


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(row[key] for row in rows), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pip/uv update pairs to time")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch_name:
        scratch = Path(scratch_name)
        # The benchmark's deploys go to a history of their own, not the operator's.
        os.environ["SLIPWAY_HISTORY_DB"] = str(scratch / "history.sqlite3")
        fresh_host()
        cold = deploy("first deploy, cold cache")
        with (scratch / "cache.tar").open("wb") as saved:
            podman("exec", CONTAINER, "tar", "-C", CACHE_PARENT, "-cf", "-", CACHE_NAME,
                   stdout=saved)
        fresh_host()
        podman("exec", CONTAINER, "install", "-d", "-m", "0755", CACHE_PARENT)
        with (scratch / "cache.tar").open("rb") as saved:
            podman("exec", "-i", CONTAINER, "tar", "-C", CACHE_PARENT, "-xpf", "-", stdin=saved)
        warm = deploy("first deploy, warm cache")
        rows += [cold, warm]

        for mode in ("false", "true"):
            rows.append(deploy(f"warm-up app_uv={mode}", "-e", f"app_uv={mode}", "-e",
                               f"app_source={code_change(scratch, f'warm-up-{mode}')}"))
        updates = {"false": [], "true": []}
        for number in range(args.rounds):
            order = ("false", "true") if number % 2 == 0 else ("true", "false")
            for mode in order:
                label = f"round {number + 1} app_uv={mode}"
                source = code_change(scratch, f"round-{number + 1}-{mode}")
                row = deploy(label, "-e", f"app_uv={mode}", "-e", f"app_source={source}")
                updates[mode].append(row)
                rows.append(row)

    pip, uv = updates["false"], updates["true"]
    summary = {
        "update_wall_s": {"pip": median(pip, "wall_s"), "uv": median(uv, "wall_s")},
        "update_venv_s": {"pip": median(pip, "pip_venv_s"), "uv": median(uv, "uv_venv_s"),
                          "uv_install_check": median(uv, "uv_install_check_s")},
        "first_deploy_wall_s": {"cold": cold["wall_s"], "warm": warm["wall_s"]},
        "first_deploy_wheel_build_s": {"cold": cold["wheel_build_s"],
                                       "warm": warm["wheel_build_s"]},
    }
    summary["ratios"] = {
        "update_wall_uv_over_pip": round(summary["update_wall_s"]["uv"]
                                         / summary["update_wall_s"]["pip"], 3),
        "update_venv_uv_over_pip": round(summary["update_venv_s"]["uv"]
                                         / summary["update_venv_s"]["pip"], 3),
        "update_venv_with_check_uv_over_pip": round(
            (summary["update_venv_s"]["uv"] + summary["update_venv_s"]["uv_install_check"])
            / summary["update_venv_s"]["pip"], 3),
        "first_deploy_wall_warm_over_cold": round(warm["wall_s"] / cold["wall_s"], 3),
    }
    print(json.dumps(summary, indent=2))
    out = REPO / "benchmarks" / "results" / "host_builds.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": rows, "summary": summary, "rounds": args.rounds},
                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
