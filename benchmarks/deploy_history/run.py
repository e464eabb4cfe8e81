"""Overhead of the deploy_history callback, side by side with no callback and with ARA's.

    .venv/bin/python benchmarks/deploy_history/run.py [--rounds 5] [--tasks 300] [--hosts 4]
                                                      [--variants none,slipway,ara]

One playbook of --tasks tasks on --hosts local hosts, run by the same ansible-playbook three ways
in every round (order rotated from round to round, so drift hits every variant alike):
  none      no notification callback
  slipway   slipway.django.deploy_history, SQLite store in a temporary directory
  ara       ARA's callback (PyPI `ara`), offline API client, local SQLite
ARA and ansible-core go into a throw-away virtualenv (.cache/benchmarks/ara-venv), which all three
variants use, so that they share one interpreter and one ansible-core. One unmeasured warm-up run
per variant comes first (ARA creates its database then). Results: benchmarks/results/.

Three measures per run: wall time; CPU time of ansible-playbook and its workers; CPU time of the
controller process alone, where callbacks run (the least noisy on a busy machine).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / "benchmarks" / "ara-venv"
# ara 1.7.3 imports health_check.db, which django-health-check 4 no longer has.
PINS = ["ara[server]==1.7.3", "django-health-check==3.24.0", "ansible-core==2.19.14"]
VARIANTS = ("none", "slipway", "ara")


def ensure_venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # A no-op once satisfied; ARA's offline client needs its server extra (Django).
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    return python


def write_project(directory: Path, tasks: int, hosts: int) -> tuple[Path, Path]:
    inventory = directory / "inventories" / "bench" / "hosts.ini"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("[bench]\n" + "".join(
        f"bench{i} ansible_connection=local ansible_python_interpreter={VENV}/bin/python\n"
        for i in range(1, hosts + 1)))
    lines = ["- name: Benchmark play", "  hosts: bench", "  gather_facts: false", "  tasks:"]
    # Mostly controller-side tasks, which make the callback's share of the run largest; every
    # tenth task runs a module on the hosts, as deploys do.
    for number in range(1, tasks + 1):
        lines.append(f"    - name: Task {number}")
        if number % 10 == 0:
            lines.append("      ansible.builtin.command: 'true'")
            lines.append("      changed_when: false")
        elif number % 3 == 0:
            lines.append("      ansible.builtin.set_fact:")
            lines.append(f"        fact_{number}: '{{{{ inventory_hostname }}}}-{number}'")
        elif number % 3 == 1:
            lines.append("      ansible.builtin.debug:")
            lines.append(f"        msg: 'task {number} on {{{{ inventory_hostname }}}}'")
        else:
            lines.append("      ansible.builtin.assert:")
            lines.append(f"        that: [{number} > 0]")
            lines.append("        quiet: true")
    playbook = directory / "bench.yml"
    playbook.write_text("\n".join(lines) + "\n")
    return inventory, playbook


def write_config(work: Path) -> Path:
    """The repository's ansible.cfg with absolute paths and no callback enabled."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "ansible.cfg")
    config.remove_option("defaults", "callbacks_enabled")
    config.set("defaults", "collections_path", str(ROOT / ".cache" / "collections"))
    config.set("defaults", "roles_path", str(ROOT / "roles"))
    path = work / "ansible.cfg"
    with open(path, "w") as handle:
        config.write(handle)
    return path


def variant_env(variant: str, python: Path, work: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ANSIBLE_", "SLIPWAY_", "ARA_"))}
    env.update({"PATH": f"{python.parent}:{env.get('PATH', '')}",
                "ANSIBLE_CONFIG": str(write_config(work)), "ANSIBLE_FORCE_COLOR": "0"})
    if variant == "slipway":
        env["ANSIBLE_CALLBACKS_ENABLED"] = "slipway.django.deploy_history"
        env["SLIPWAY_HISTORY_DB"] = str(work / "slipway" / "history.sqlite3")
        env["SLIPWAY_HISTORY_SPOOL_DIR"] = str(work / "slipway" / "spool")
    elif variant == "ara":
        plugins = subprocess.run([str(python), "-m", "ara.setup.callback_plugins"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        env.update({"ANSIBLE_CALLBACK_PLUGINS": plugins,
                    "ANSIBLE_CALLBACKS_ENABLED": "ara_default",
                    "ARA_API_CLIENT": "offline", "ARA_BASE_DIR": str(work / "ara")})
    return env


# Runs ansible-playbook in this interpreter and, at exit, writes the CPU time of the controller
# process alone (callbacks run there, never in the forked workers) to $BENCH_CPU_FILE.
CONTROLLER_CPU = """
import atexit, os, resource, runpy, sys
pid = os.getpid()
def report():
    if os.getpid() == pid:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        with open(os.environ["BENCH_CPU_FILE"], "w") as handle:
            handle.write(str(usage.ru_utime + usage.ru_stime))
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_once(python: Path, env: dict[str, str], inventory: Path,
             playbook: Path) -> tuple[float, float, float]:
    """Wall time; CPU time of ansible-playbook and its workers; CPU time of the controller."""
    cpu_file = Path(tempfile.mkstemp(prefix="bench-cpu-")[1])
    argv = [str(python), "-c", CONTROLLER_CPU, str(python.parent / "ansible-playbook"),
            "-i", str(inventory), str(playbook)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, env={**env, "BENCH_CPU_FILE": str(cpu_file)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    controller = float(cpu_file.read_text() or 0)
    cpu_file.unlink()
    if result.returncode != 0:
        raise SystemExit(f"ansible-playbook failed ({result.returncode}):\n{result.stderr}")
    total = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return elapsed, total, controller


def recorded(work: Path) -> dict[str, int]:
    """What each callback stored, to show that the timed runs really recorded."""
    counts = {}
    slipway = work / "slipway" / "history.sqlite3"
    if slipway.exists():
        with sqlite3.connect(slipway) as db:
            counts["slipway_runs"] = db.execute("SELECT COUNT(*) FROM deploy_history").fetchone()[0]
            counts["slipway_task_results"] = db.execute(
                "SELECT COUNT(*) FROM deploy_task_results").fetchone()[0]
    ara = work / "ara" / "ansible.sqlite"
    if ara.exists():
        with sqlite3.connect(ara) as db:
            counts["ara_playbooks"] = db.execute("SELECT COUNT(*) FROM playbooks").fetchone()[0]
            counts["ara_results"] = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    return counts


def _paired(samples: dict[str, list[float]]) -> dict[str, float]:
    return {v: statistics.median([t / n - 1 for t, n in zip(samples[v], samples["none"],
                                                             strict=True)])
            for v in samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = parser.parse_args()

    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    python = ensure_venv()
    work = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    try:
        inventory, playbook = write_project(work, args.tasks, args.hosts)
        envs = {variant: variant_env(variant, python, work) for variant in variants}
        for variant in variants:
            run_once(python, envs[variant], inventory, playbook)
        measures = ("wall", "cpu", "controller_cpu")
        samples: dict[str, dict[str, list[float]]] = {
            m: {v: [] for v in variants} for m in measures}
        for number in range(args.rounds):
            shift = number % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                for measure, value in zip(measures, run_once(python, envs[variant], inventory,
                                                             playbook), strict=True):
                    samples[measure][variant].append(value)
            print(f"round {number + 1}: " + "  ".join(
                f"{v} {samples['wall'][v][-1]:.2f}s (cpu {samples['cpu'][v][-1]:.2f}s, "
                f"controller {samples['controller_cpu'][v][-1]:.2f}s)" for v in variants),
                flush=True)
        summary = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "tasks": args.tasks, "hosts": args.hosts, "rounds": args.rounds,
            "pins": PINS, "samples": samples, "recorded": recorded(work),
            "median": {m: {v: statistics.median(t) for v, t in samples[m].items()}
                       for m in measures},
            "overhead": {m: _paired(samples[m]) for m in measures},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "deploy_history.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{args.tasks} tasks x {args.hosts} hosts, {args.rounds} interleaved rounds; "
          "overhead = median over rounds of (variant / none - 1)")
    for v in variants:
        print(f"  {v:<8}" + "".join(
            f"  {m} {summary['median'][m][v]:7.2f}s {summary['overhead'][m][v]:+7.1%}"
            for m in ("wall", "cpu", "controller_cpu")))
    print(f"  recorded: {summary['recorded']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
