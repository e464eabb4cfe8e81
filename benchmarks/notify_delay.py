"""What notifications add to a run's wall time, side by side with no notifications.

    .venv/bin/python benchmarks/notify_delay.py [--rounds 5] [--tasks 40]

One playbook of --tasks tasks on two local hosts, recorded by the deploy_history callback (SQLite
store in a temporary directory), run in every round four ways (order rotated from round to
round, so drift hits every variant alike):
  none      no slipway_notifications
  receiver  a webhook receiver on 127.0.0.1 that answers at once (events started, succeeded)
  refused   a closed port on 127.0.0.1 (each attempt is refused at once)
  silent    a port on 127.0.0.1 that accepts connections and never answers: every attempt
            runs into the timeout, which is the worst an unreachable receiver can cost

The figure the notifications promise: a receiver that never answers slows a run by at most the
bounded delivery time of the end event, timeout * (retries + 1) + the pause between attempts
(the started event is sent in the background while the run goes on). Results, medians and
ratios to `none`: benchmarks/results/notify_delay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from notify_receiver import Receiver  # noqa: E402

from slipway import notify  # noqa: E402

SECRET = "benchmark-notify-secret"  # noqa: S105 - the local receiver's test key
VARIANTS = ("none", "receiver", "refused", "silent")
EVENTS = ["started", "succeeded"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_project(root: Path, url: str | None, tasks: int) -> tuple[Path, Path]:
    inventory = root / "inventories" / "bench"
    (inventory / "group_vars").mkdir(parents=True)
    hosts = "\n".join(f"web{i} ansible_connection=local ansible_python_interpreter={sys.executable}"
                      for i in (1, 2))
    (inventory / "hosts.ini").write_text(f"[web]\n{hosts}\n")
    group_vars = {"slipway_environment": "bench", "notify_secret": SECRET}
    if url:
        group_vars["slipway_notifications"] = [
            {"type": "webhook", "url": url, "secret": "{{ notify_secret }}", "events": EVENTS}]
    (inventory / "group_vars" / "all.yml").write_text(json.dumps(group_vars))
    playbook = root / "deploy.yml"
    steps = "".join(f"    - name: Step {i}\n      ansible.builtin.set_fact:\n"
                    f"        bench_step: {i}\n" for i in range(tasks))
    playbook.write_text("- name: Benchmark\n  hosts: web\n  gather_facts: false\n"
                        f"  tasks:\n{steps}")
    return inventory / "hosts.ini", playbook


def run_once(root: Path, inventory: Path, playbook: Path) -> float:
    env = dict(os.environ)
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "slipway.django.deploy_history",
        "SLIPWAY_HISTORY_DB": str(root / "history.sqlite3"),
        "SLIPWAY_HISTORY_SPOOL_DIR": str(root / "spool"),
        "SLIPWAY_DEPLOYED_BY": "benchmark",
    })
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                             str(inventory), str(playbook)], env=env, cwd=root,
                            capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"ansible-playbook failed ({result.returncode}):\n"
                         f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()

    receiver = Receiver(SECRET)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    urls = {"none": None, "receiver": receiver.url,
            "refused": f"http://127.0.0.1:{closed_port()}/hooks/deploy",
            "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/hooks/deploy"}
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        with tempfile.TemporaryDirectory(prefix="slipway-notify-bench-") as tmp:
            projects = {}
            for variant in VARIANTS:
                root = Path(tmp) / variant
                projects[variant] = (root, *write_project(root, urls[variant], args.tasks))
            for variant in VARIANTS:  # unmeasured warm-up (the history store is created)
                run_once(*projects[variant])
            for round_no in range(args.rounds):
                order = VARIANTS[round_no % len(VARIANTS):] + VARIANTS[:round_no % len(VARIANTS)]
                for variant in order:
                    times[variant].append(run_once(*projects[variant]))
                    print(f"round {round_no + 1} {variant}: {times[variant][-1]:.2f} s",
                          flush=True)
    finally:
        silent.close()
        receiver.close()

    bound = notify.DEFAULT_TIMEOUT * 2 + notify.RETRY_PAUSE
    base = statistics.median(times["none"])
    report = {"rounds": args.rounds, "tasks": args.tasks, "hosts": 2,
              "bound_seconds_per_event": bound, "variants": {}}
    print(f"\n{'variant':<10} {'median s':>9} {'ratio':>7} {'added s':>8}")
    for variant in VARIANTS:
        median = statistics.median(times[variant])
        report["variants"][variant] = {"median_seconds": round(median, 3),
                                       "ratio_to_none": round(median / base, 3),
                                       "added_seconds": round(median - base, 3),
                                       "runs": [round(value, 3) for value in times[variant]]}
        print(f"{variant:<10} {median:>9.2f} {median / base:>7.2f} {median - base:>8.2f}")
    print(f"bound per event for a receiver that never answers: {bound:.1f} s "
          f"(timeout {notify.DEFAULT_TIMEOUT:.0f} s x 2 attempts + {notify.RETRY_PAUSE} s)")
    out = ROOT / "benchmarks" / "results" / "notify_delay.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
