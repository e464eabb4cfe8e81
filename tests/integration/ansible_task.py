"""Run one task of a slipway.django module through a real ansible-playbook on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


def run_task(module: str, args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run ``slipway.django.<module>`` once in its own ansible-playbook process; its result."""
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable},
             "tasks": [{"name": module, f"slipway.django.{module}": args,
                        "register": "outcome", "ignore_errors": True}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", handle.name]
    argv += (["--check"] if check else []) + (["--diff"] if diff else [])
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        os.unlink(handle.name)
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    return report["plays"][0]["tasks"][0]["hosts"]["localhost"]
