"""Deploy console figures: live-log delay in a browser, and time from cancel to processes gone.

    .venv/bin/python benchmarks/console/run.py latency [--lines 200] [--flush-interval 0.25]
    .venv/bin/python benchmarks/console/run.py cancel [--tries 20] [--grace 3]

Both start a real console (`slipway-console serve`) with the test harness of tests/console on a
throw-away SQLite store and run real ansible-playbook processes against localhost.

latency: a playbook prints LINE n EPOCH lines (EPOCH taken when ansible-playbook renders the
task's message, just before it prints it) while headless chromium (Debian's, driven by
Playwright) shows the run page; a MutationObserver in the page notes when each line appears.
Delay = appeared - EPOCH, over every line.

cancel: a run that sleeps (and, in the `stubborn` variant, ignores SIGTERM so it takes the
SIGKILL after the grace period) is cancelled through the API; a thread polls /proc every 5 ms
for processes that carry the run's id in their environment. Time = last one gone - request
sent.

Results go to benchmarks/results/console-<what>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "console"))

from console_helpers import PASSWORD, Site, run_processes, wait_for_pid_in_store  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OBSERVER = r"""
window.benchLines = [];
new MutationObserver((mutations) => {
  const now = performance.timeOrigin + performance.now();
  for (const mutation of mutations) {
    for (const node of mutation.addedNodes) {
      for (const match of (node.textContent || "").matchAll(/LINE (\d+) ([\d.]+)/g)) {
        window.benchLines.push([Number(match[1]), Number(match[2]) * 1000, now]);
      }
    }
  }
}).observe(document, {childList: true, subtree: true});
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"count": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": max(values), "mean": statistics.fmean(values)}


def lines_playbook(path: Path, lines: int) -> None:
    tasks = ["    - name: Give the page time to open\n"
             "      ansible.builtin.wait_for:\n        timeout: 4\n"]
    tasks += [f"    - name: Line {n}\n      ansible.builtin.debug:\n"
              f"        msg: \"LINE {n} {{{{ '%.6f' % now().timestamp() }}}}\"\n"
              for n in range(1, lines + 1)]
    path.write_text("- name: Timestamped lines\n  hosts: app\n  gather_facts: false\n"
                    "  tasks:\n" + "".join(tasks))


def latency(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    site = Site(work)
    lines_playbook(work / "lines.yml", args.lines)
    text = site.config.read_text().replace(
        "  staging:\n", f"  bench:\n    inventory: inventories/staging\n"
        f"    deploy_playbook: {work / 'lines.yml'}\n  staging:\n", 1)
    site.config.write_text(f"log_flush_interval: {args.flush_interval}\n{text}")
    site.add_user("root", "admin")
    site.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page()
            page.add_init_script(OBSERVER)
            page.goto(site.url + "/login")
            page.fill("#name", "root")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/runs"))
            with site.api("root") as client:
                run = client.post("/api/v1/deploy/trigger", json={"environment": "bench"}).json()
            page.goto(f"{site.url}/runs/{run['id']}")
            page.wait_for_selector("#run-status:not(.status-running)", timeout=600_000)
            rows = page.evaluate("window.benchLines")
            browser.close()
        status = site.wait_for(run["id"])
    finally:
        site.stop()
        shutil.rmtree(work, ignore_errors=True)
    delays = [(shown - printed) / 1000 for _, printed, shown in rows]
    seen = sorted(n for n, _, _ in rows)
    return {"what": "line printed by ansible-playbook -> shown in an open browser page",
            "lines": args.lines, "lines_seen": len(seen), "status": status["status"],
            "all_lines_seen_once": seen == list(range(1, args.lines + 1)),
            "flush_interval": args.flush_interval, "poll_interval": 0.1,
            "delay_seconds": summary(delays)}


def watch_gone(run_uuid: str, started: float, result: dict) -> None:
    while run_processes(run_uuid):
        time.sleep(0.005)
    result["gone_after"] = time.monotonic() - started


def cancel(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="console-bench-"))
    site = Site(work, grace=args.grace)
    site.add_user("root", "admin")
    site.start()
    variants: dict[str, list[dict]] = {"sigterm": [], "stubborn": []}
    try:
        with site.api("root") as client:
            for attempt in range(args.tries):
                for variant, environment in (("sigterm", "slow"), ("stubborn", "stubborn")):
                    run = client.post("/api/v1/deploy/trigger",
                                      json={"environment": environment}).json()
                    site.wait_for_file(f"sleep-{run['run_uuid']}.pid")
                    wait_for_pid_in_store(site, run["id"])
                    before = len(run_processes(run["run_uuid"]))
                    observed: dict = {}
                    started = time.monotonic()
                    watcher = threading.Thread(target=watch_gone,
                                               args=(run["run_uuid"], started, observed))
                    watcher.start()
                    answer = client.post(f"/api/v1/deploy/cancel/{run['id']}").json()
                    answered = time.monotonic() - started
                    watcher.join(60)
                    status = site.wait_for(run["id"])["status"]
                    site.wait_for(answer["unlock_run_id"])
                    variants[variant].append({
                        "try": attempt + 1, "processes": before,
                        "gone_after": observed.get("gone_after"), "answered_after": answered,
                        "killed": answer["killed"], "status": status})
                    print(variant, attempt + 1, f"{observed.get('gone_after'):.3f}s",
                          answer["killed"], status, flush=True)
    finally:
        site.stop()
        shutil.rmtree(work, ignore_errors=True)
    result = {"what": "cancel request -> no process of the run left", "grace": args.grace,
              "goal_seconds": args.grace + 1}
    for variant, tries in variants.items():
        gone = [entry["gone_after"] for entry in tries]
        result[variant] = {
            "tries": len(tries), "gone_seconds": summary(gone),
            "all_under_goal": all(value < args.grace + 1 for value in gone),
            "all_cancelled": all(entry["status"] == "cancelled" for entry in tries),
            "sigkill_needed": sum(entry["killed"] for entry in tries),
            "detail": tries}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lat = commands.add_parser("latency")
    lat.add_argument("--lines", type=int, default=200)
    lat.add_argument("--flush-interval", type=float, default=0.25,
                     help="the console's log_flush_interval (the callback's own default is 1)")
    can = commands.add_parser("cancel")
    can.add_argument("--tries", type=int, default=20)
    can.add_argument("--grace", type=float, default=3.0)
    args = parser.parse_args()
    result = latency(args) if args.command == "latency" else cancel(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = f"-flush{args.flush_interval:g}" if args.command == "latency" else ""
    path = RESULTS / f"console-{args.command}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "detail"}, indent=2,
                     default=str)[:4000])
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
