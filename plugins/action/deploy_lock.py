# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of slipway.django.deploy_lock: who holds the lock, seen from the controller.

It records the controller's host name and the ansible-playbook process (its pid and start
time) with the lock. When the lock is held by a run from this same controller whose process is
gone - a run interrupted with Ctrl-C or killed - the lock is broken at once instead of making
the operator wait for it to age.
"""

from __future__ import annotations

import getpass
import os
import socket

from ansible.plugins.action import ActionBase


def process_start(pid):
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_gone(pid, start):
    if not isinstance(pid, int) or pid <= 1:
        return False
    if process_start(pid) is None:
        return True
    return start is not None and process_start(pid) != start


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("path", "state", "run_id", "owner", "max_age", "break_stale",
                             "break_run"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        # Workers are forked by the ansible-playbook process: their parent is the run.
        playbook_pid = os.getppid()
        owner = dict(args.get("owner") or {})
        owner.setdefault("user", os.environ.get("SLIPWAY_DEPLOYED_BY")
                         or os.environ.get("SUDO_USER") or getpass.getuser())
        owner.setdefault("controller", socket.gethostname())
        owner.setdefault("controller_pid", playbook_pid)
        owner.setdefault("controller_pid_start", process_start(playbook_pid))
        args["owner"] = owner
        answer = self._execute_module(module_name="slipway.django.deploy_lock",
                                      module_args=args, task_vars=task_vars)
        holder = answer.get("holder") or {}
        if (answer.get("failed") and args.get("state", "present") == "present"
                and not args.get("break_run") and holder.get("run_id")
                and holder.get("controller") == owner["controller"]
                and process_gone(holder.get("controller_pid"), holder.get("controller_pid_start"))):
            args["break_run"] = holder["run_id"]
            answer = self._execute_module(module_name="slipway.django.deploy_lock",
                                          module_args=args, task_vars=task_vars)
            if not answer.get("failed"):
                answer["msg"] += (" (its ansible-playbook process "
                                  f"{holder.get('controller_pid')} on this controller is gone)")
        result.update(answer)
        return result
