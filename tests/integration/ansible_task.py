"""Run tasks of slipway.django modules through a real ansible-playbook on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def run_playbook(plays: list[dict], host: str = "localhost", connection: str = "local",
                 check: bool = False, diff: bool = False,
                 extra_vars: dict | None = None) -> dict:
    """Run ``plays`` in their own ansible-playbook process against one ``host`` (over
    ``connection``, such as containers.podman.podman for a test container), the collection
    resolved to this checkout; ansible.posix.json's report (plays, tasks, stats)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(plays, handle)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
           "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", f"{host},", "-c", connection, handle.name]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += (["--check"] if check else []) + (["--diff"] if diff else [])
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
    finally:
        os.unlink(handle.name)
    try:
        return json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError as error:
        raise AssertionError(f"ansible-playbook printed no JSON:\n{proc.stdout}\n"
                             f"{proc.stderr}") from error


def run_tasks(tasks: list[dict], check: bool = False, diff: bool = False) -> list[dict]:
    """Run ``tasks`` as one play of their own ansible-playbook process on localhost, with the
    virtualenv's python as the modules' interpreter; the tasks' results in order. Give the
    tasks ``ignore_errors: true`` to see a failure's result instead of the play stopping."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]
    report = run_playbook(play, check=check, diff=diff,
                          extra_vars={"ansible_python_interpreter": str(VENV_BIN / "python")})
    return [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]]


def run_task(module: str, args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run ``slipway.django.<module>`` once in its own ansible-playbook process; its result."""
    task = {"name": module, f"slipway.django.{module}": args, "ignore_errors": True}
    return run_tasks([task], check=check, diff=diff)[0]
