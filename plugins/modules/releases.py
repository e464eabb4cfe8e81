#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: releases
short_description: Mark and prune an app's releases on a host
description:
  - Works on the releases under O(root)C(/releases) - each built by the app role with its record
    C(.slipway-release.json) - and the outcome of their deploys kept beside it in
    C(.slipway-status.json).
  - V(mark) records a deploy's outcome for a release - V(succeeded), V(failed) (a failed health
    gate or migration) or V(rolled_back) (left by a rollback) - with the data the deploy knows,
    such as the migration state, the backup taken before it, the previous release, the run id.
  - V(prune) removes old releases down to O(keep), failed and unfinished ones first. The current
    release, the last good one before it and those in O(protect) are never removed. Wheelhouses
    under C(shared/wheelhouse) no release refers to any more are removed too.
  - Every action returns the releases as they are afterwards, with their status, which one is
    current, and the last good one before it (the default rollback target).
  - To list the releases, use M(slipway.django.releases_info). V(list), this module's default,
    is deprecated and will be removed in version 0.3.0.
version_added: "0.1.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: V(mark) and V(prune) report what they would change without changing it.
  diff_mode:
    support: full
    details: V(mark) shows the status record before and after; V(prune) lists what goes.
  platform:
    platforms: posix
options:
  root:
    description:
      - The app's root, holding C(releases/), C(current) and C(shared/).
    type: path
    required: true
  action:
    description:
      - What to do - V(mark) or V(prune).
      - V(list) only returns the releases. It is deprecated and will be removed in version
        0.3.0 - use M(slipway.django.releases_info) instead. It is also what the module does
        when O(action) is omitted, which is deprecated the same way; give O(action) explicitly.
    type: str
    choices: [list, mark, prune]
    default: list
  release:
    description:
      - The release to mark. Required with O(action=mark).
    type: str
  status:
    description:
      - The outcome to record with O(action=mark).
    type: str
    choices: [succeeded, failed, rolled_back]
  data:
    description:
      - More to record with O(action=mark), merged into the status record, for instance
        C(migrations) (the migration state, see M(slipway.django.migrations)), C(backup),
        C(previous), C(run_id).
    type: dict
    default: {}
  keep:
    description:
      - How many releases O(action=prune) keeps. The current and the last good release are kept
        even beyond this number.
    type: int
    default: 5
  protect:
    description:
      - Releases O(action=prune) must not remove, for instance the one being deployed.
    type: list
    elements: str
    default: []
seealso:
  - module: slipway.django.releases_info
    description: Lists the releases, their status, the current one and the rollback target.
"""

EXAMPLES = r"""
- name: Record that the release passed its health gate
  slipway.django.releases:
    root: /srv/shop
    action: mark
    release: 3f2a9c1b7d0e
    status: succeeded
    data:
      migrations: "{{ shop_migrations.state }}"

- name: Keep the five newest releases
  slipway.django.releases:
    root: /srv/shop
    action: prune
    keep: 5
"""

RETURN = r"""
releases:
  description: The releases, the most recently deployed (or built) first.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 3f2a9c1b7d0e
      status: succeeded
      current: true
      commit: 9fceb02d0ae598e95dc970b74767f19372d61af8
      branch: main
      built_at: "2026-11-23T10:14:02Z"
      deployed_at: "2026-11-23T10:15:40Z"
      migrations: ["shop.0001_initial"]
      backup: 20261123T101500Z-3f2a9c1b
      previous: 1b2c3d4e5f6a
current:
  description: The current release, or null.
  returned: always
  type: str
  sample: 3f2a9c1b7d0e
previous_good:
  description:
    - The most recently deployed release, other than the current one, whose deploy succeeded
      and that no rollback left - the default rollback target - or null.
  returned: always
  type: str
  sample: 1b2c3d4e5f6a
removed:
  description: Releases and wheelhouses O(action=prune) removed (or would remove).
  returned: always
  type: list
  elements: str
  sample: ["releases/0a1b2c3d4e5f", "shared/wheelhouse/1a2b3c4d5e6f-py3.11.2"]
record:
  description: The status record written by O(action=mark).
  returned: when O(action=mark)
  type: dict
  sample: {"status": "succeeded", "deployed_at": "2026-11-23T10:15:40Z"}
"""

import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.slipway.django.plugins.module_utils.releases import (
    BUILD_RECORD,
    STATUS_RECORD,
    describe,
    previous_good,
    read_json,
    read_releases,
)

LIST_DEPRECATION = (
    "action=list of slipway.django.releases (also what it does when action is omitted) is"
    " deprecated: list the releases with slipway.django.releases_info, which returns the same"
    " releases, current and previous_good, and give this module action=mark or action=prune.")


def mark(module, params):
    root, release = params["root"], params["release"]
    path = os.path.join(root, "releases", release)
    if not os.path.isfile(os.path.join(path, BUILD_RECORD)):
        module.fail_json(msg=f"No release {release!r} under {root}/releases (no {BUILD_RECORD}).")
    record_path = os.path.join(path, STATUS_RECORD)
    before = read_json(record_path)
    record = dict(before, **params["data"])
    record["status"] = params["status"]
    stamp_now = params["status"] == "succeeded" or "deployed_at" not in record
    if "deployed_at" not in params["data"] and stamp_now:
        record["deployed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Timestamps alone do not make a change.
    stamps = ("deployed_at", "finished_at")
    changed = {k: v for k, v in before.items() if k not in stamps} != \
        {k: v for k, v in record.items() if k not in stamps}
    if not changed:
        record = before
    result = {"changed": changed, "record": record}
    if changed and module._diff:
        result["diff"] = {"before": json.dumps(before, indent=1, sort_keys=True) + "\n",
                          "after": json.dumps(record, indent=1, sort_keys=True) + "\n"}
    if changed and not module.check_mode:
        partial = record_path + ".partial"
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.chmod(partial, 0o644)
        os.replace(partial, record_path)
    return result


def prune(module, params, releases, current):
    root = params["root"]
    keep_ids = {current, previous_good(releases), *params["protect"]} - {None}
    # Removal order: failed and unfinished releases first, then the oldest.
    rank = {"failed": 0, "incomplete": 0, "built": 1, "rolled_back": 2, "succeeded": 3}
    candidates = [entry for entry in releases if entry["id"] not in keep_ids]
    candidates.sort(key=lambda entry: (rank.get(entry["status"], 1), entry["deployed_at"] or "",
                                       entry["built_at"] or ""))
    excess = len(releases) - params["keep"]
    doomed = [entry["id"] for entry in candidates
              if entry["status"] in ("failed", "incomplete")]
    for entry in candidates:
        if len(doomed) >= excess:
            break
        if entry["id"] not in doomed:
            doomed.append(entry["id"])
    removed = [f"releases/{name}" for name in doomed]
    kept = [entry for entry in releases if entry["id"] not in doomed]
    wheelhouses = os.path.join(root, "shared", "wheelhouse")
    if kept and all(entry["wheelhouse"] for entry in kept) and os.path.isdir(wheelhouses):
        used = {os.path.basename(entry["wheelhouse"].rstrip("/")) for entry in kept}
        removed += [f"shared/wheelhouse/{name}" for name in sorted(os.listdir(wheelhouses))
                    if name not in used and os.path.isdir(os.path.join(wheelhouses, name))]
    if not module.check_mode:
        for relative in removed:
            shutil.rmtree(os.path.join(root, relative))
    result = {"changed": bool(removed), "removed": removed}
    if removed and module._diff:
        result["diff"] = {"before": "".join(f"{path}\n" for path in removed), "after": ""}
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            action=dict(type="str", choices=["list", "mark", "prune"], default="list"),
            release=dict(type="str"),
            status=dict(type="str", choices=["succeeded", "failed", "rolled_back"]),
            data=dict(type="dict", default={}),
            keep=dict(type="int", default=5),
            protect=dict(type="list", elements="str", default=[]),
        ),
        required_if=[("action", "mark", ("release", "status"))],
        supports_check_mode=True,
    )
    params = module.params
    if params["keep"] < 1:
        module.fail_json(msg="keep must be at least 1")
    if params["release"] is not None and (
            not params["release"] or "/" in params["release"] or params["release"] in (".", "..")):
        module.fail_json(msg=f"Bad release id {params['release']!r}.")
    if params["action"] == "list":
        module.deprecate(LIST_DEPRECATION, version="0.3.0", collection_name="slipway.django")
    result = {"changed": False, "removed": []}
    if params["action"] == "mark":
        result.update(mark(module, params))
    if params["action"] == "prune":
        releases, current = read_releases(params["root"])
        result.update(prune(module, params, releases, current))
    result.update(describe(params["root"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
