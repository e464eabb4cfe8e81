#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_lock
short_description: Take or release a host's deploy lock
description:
  - Takes (O(state=present)) or releases (O(state=absent)) the lock that keeps two deploys of
    the same app from running on a host at once. The lock is a small JSON file naming its
    holder - the run id, who started it, from which controller and process, which playbook and
    environment, and when.
  - Taking the lock is atomic (the file is created exclusively). Taking a lock the same run
    already holds changes nothing, so every play of a run can take it.
  - When another run holds the lock, the task fails at once with a message naming the holder
    and its age. A lock older than O(max_age) can be broken explicitly with O(break_stale).
  - The action plugin of the same name adds the controller's host name, the C(ansible-playbook)
    process id and its start time to O(owner). When the holder ran on this controller and its
    process is gone (an interrupted run), the lock is broken at once and the broken holder
    is reported.
  - Releasing removes the lock only when O(run_id) holds it; a lock held by another run is left
    alone and reported.
version_added: "0.1.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: Reports whether the lock would be taken, broken or released, and fails the same way
      when another run holds it; writes nothing.
  diff_mode:
    support: full
    details: Shows the lock file's holder before and after.
  platform:
    platforms: posix
options:
  path:
    description:
      - The lock file. Its directory is created (root only, C(0755)) when missing.
    type: path
    required: true
  state:
    description:
      - V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - Id of the run taking or releasing the lock, for instance the deploy history's run uuid.
    type: str
    required: true
  owner:
    description:
      - What is recorded about the holder besides O(run_id), for instance C(user), C(playbook),
        C(environment), C(release). The action plugin adds C(controller), C(controller_pid) and
        C(controller_pid_start).
    type: dict
    default: {}
  max_age:
    description:
      - Age in seconds after which a lock held by another run counts as stale and may be broken
        with O(break_stale).
    type: int
    default: 7200
  break_stale:
    description:
      - Break a lock held by another run when it is older than O(max_age), and take it.
      - A younger lock is never broken this way; the task fails and says how old it is.
    type: bool
    default: false
  break_run:
    description:
      - Break the lock when, and only when, this run id holds it (the action plugin uses it for
        a holder whose process is gone).
    type: str
"""

EXAMPLES = r"""
- name: Take the deploy lock of the shop app
  slipway.django.deploy_lock:
    path: /var/lib/slipway/shop/deploy.lock
    run_id: "{{ lookup('ansible.builtin.env', 'SLIPWAY_HISTORY_RUN_UUID') }}"
    owner:
      user: "{{ lookup('ansible.builtin.env', 'USER') }}"
      playbook: deploy.yml
      environment: production

- name: Break a lock older than an hour, left by a run that died on another controller
  slipway.django.deploy_lock:
    path: /var/lib/slipway/shop/deploy.lock
    run_id: "{{ run_id }}"
    max_age: 3600
    break_stale: true

- name: Release the lock this run holds
  slipway.django.deploy_lock:
    path: /var/lib/slipway/shop/deploy.lock
    run_id: "{{ run_id }}"
    state: absent
"""

RETURN = r"""
acquired:
  description: Whether the run holds the lock once the task is over (or would, in check mode).
  returned: always
  type: bool
  sample: true
holder:
  description: The lock's holder as found before the task, or null when the lock was free.
  returned: always
  type: dict
  sample:
    run_id: 0b9e1c2a-3f4d-4e5f-8a6b-7c8d9e0f1a2b
    user: alice
    controller: ops1
    controller_pid: 4321
    playbook: deploy.yml
    environment: production
    taken_at: "2026-11-23T10:15:00Z"
age:
  description: Age in seconds of the lock found, or null.
  returned: always
  type: int
  sample: 95
broken:
  description: The holder whose lock was broken, or null.
  returned: always
  type: dict
  sample: null
msg:
  description: What was done, or why the lock could not be taken.
  returned: always
  type: str
  sample: deploy lock taken by run 0b9e1c2a-3f4d-4e5f-8a6b-7c8d9e0f1a2b
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def read_lock(path):
    """The lock's content and age, or (None, None) when there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        age = int(time.time() - os.stat(path).st_mtime)
    except FileNotFoundError:
        return None, None
    try:
        holder = json.loads(text)
        if not isinstance(holder, dict):
            raise ValueError("not an object")
    except ValueError:
        # A lock is never ignored because it is unreadable: it stays a lock with no known run.
        holder = {"run_id": None, "unreadable": text[:200]}
    return holder, max(age, 0)


def describe(holder, age):
    who = holder.get("user") or "someone"
    where = holder.get("controller") or "an unknown controller"
    pid = holder.get("controller_pid")
    process = f", pid {pid}" if pid else ""
    what = " ".join(str(holder[key]) for key in ("playbook", "environment") if holder.get(key))
    return (f"run {holder.get('run_id')} ({who} on {where}{process}{', ' + what if what else ''})"
            f" since {holder.get('taken_at', '?')}, {age} s ago")


def write_lock(path, record):
    """Create the lock file exclusively; False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return True


def break_lock(path, holder):
    """Move a lock aside (kept for the record) so that it can be taken."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    os.replace(path, f"{path}.broken-{stamp}-{holder.get('run_id') or 'unknown'}")


def take(module, params):
    path, run_id = params["path"], params["run_id"]
    holder, age = read_lock(path)
    result = {"changed": False, "acquired": False, "holder": holder, "age": age, "broken": None}
    if holder is not None and holder.get("run_id") == run_id:
        result.update(acquired=True, msg=f"deploy lock already held by this run {run_id}")
        return result
    if holder is not None:
        stale = age >= params["max_age"] and params["break_stale"]
        dead = params["break_run"] is not None and holder.get("run_id") == params["break_run"]
        if not (stale or dead):
            hint = ("it is older than max_age; set break_stale to break it"
                    if age >= params["max_age"] else
                    f"it may be broken with break_stale once it is older than "
                    f"{params['max_age']} s, if that run is gone")
            module.fail_json(msg=f"Another deploy holds the lock {path}: {describe(holder, age)}."
                             f" Wait for it to finish; {hint}.", **result)
        result["broken"] = holder
    record = dict(params["owner"], run_id=run_id,
                  taken_at=time.strftime(TIME_FORMAT, time.gmtime()))
    result.update(changed=True, acquired=True)
    if module._diff:
        result["diff"] = {"before": json.dumps(holder, indent=1, sort_keys=True) + "\n"
                          if holder else "", "after": json.dumps(record, indent=1,
                                                                 sort_keys=True) + "\n"}
    if module.check_mode:
        result["msg"] = f"would take the deploy lock for run {run_id}"
        return result
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if holder is not None:
        break_lock(path, holder)
    if not write_lock(path, record):
        other, other_age = read_lock(path)
        module.fail_json(msg=f"Another deploy took the lock {path} at the same moment: "
                         f"{describe(other or {}, other_age or 0)}.", changed=False,
                         acquired=False, holder=other, age=other_age, broken=result["broken"])
    result["msg"] = (f"deploy lock taken by run {run_id}"
                     + (f", after breaking the lock of {describe(holder, age)}" if holder else ""))
    return result


def release(module, params):
    path, run_id = params["path"], params["run_id"]
    holder, age = read_lock(path)
    result = {"changed": False, "acquired": False, "holder": holder, "age": age, "broken": None}
    if holder is None:
        result["msg"] = "no deploy lock to release"
        return result
    if holder.get("run_id") != run_id:
        result["msg"] = f"deploy lock left alone: it is held by {describe(holder, age)}"
        return result
    result["changed"] = True
    if module._diff:
        result["diff"] = {"before": json.dumps(holder, indent=1, sort_keys=True) + "\n",
                          "after": ""}
    if not module.check_mode:
        os.unlink(path)
    result["msg"] = f"deploy lock of run {run_id} released"
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            run_id=dict(type="str", required=True),
            owner=dict(type="dict", default={}),
            max_age=dict(type="int", default=7200),
            break_stale=dict(type="bool", default=False),
            break_run=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["run_id"].strip():
        module.fail_json(msg="run_id must not be empty")
    if params["state"] == "present":
        module.exit_json(**take(module, params))
    module.exit_json(**release(module, params))


if __name__ == "__main__":
    main()
