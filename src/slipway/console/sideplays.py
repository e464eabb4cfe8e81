"""Fixed playbooks the console runs beside the deploys (the app's logs, a notification): no
run of the deploy history (the deploy_history callback is kept out) and no deploy lock. What a
user typed reaches them only as extra vars data, never templated."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import ansible_runner

from slipway.console.config import Config, Environment
from slipway.console.runs import CALLBACK, RunManager, write_unsafe_extravars


def side_environment(runs: RunManager) -> dict[str, str]:
    """A run's environment without the deploy history's variables and callback."""
    env = {key: value for key, value in runs.run_environment("-", "-").items()
           if not key.startswith("SLIPWAY_")}
    # Not a deploy: nothing of it goes to the deploy history. (An empty list would let
    # ansible.cfg's apply; the stdout callback named here is one Ansible loads anyway.)
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(
        name for name in env["ANSIBLE_CALLBACKS_ENABLED"].split(",") if name != CALLBACK
    ) or "ansible.builtin.default"
    return env


def run_side_playbook(config: Config, runs: RunManager, environment: Environment,
                      playbook: Path, ident: str, extravars: dict[str, Any],
                      timeout: float) -> tuple[int | None, list[dict[str, Any]]]:
    """Run ``playbook`` on the environment's inventory; its exit code and its events. Its
    work directory (0700) is removed after."""
    work = config.work_dir() / f"{ident}-{uuid.uuid4()}"
    try:
        work.mkdir(parents=True, mode=0o700)
        write_unsafe_extravars(work / "env" / "extravars", extravars)
        runner = ansible_runner.interface.init_runner(
            private_data_dir=str(work), project_dir=str(config.directory),
            ident=ident, playbook=str(playbook), inventory=str(environment.inventory),
            envvars=side_environment(runs), suppress_env_files=True, quiet=True,
            timeout=timeout, settings={"suppress_ansible_output": True})
        runner.run()
        return runner.rc, list(runner.events)
    finally:
        shutil.rmtree(work, ignore_errors=True)
