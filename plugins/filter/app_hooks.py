# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: app_hooks
short_description: Check the deploy's hooks and find their task files
version_added: "0.2.0"
description:
  - Checks C(app_hooks), a mapping of a deploy stage to a task file or a list of them, and
    returns every stage with the absolute paths of its task files (an empty list when none).
  - The stages are C(before_build), C(after_build), C(before_migrate), C(after_migrate),
    C(before_switch), C(after_switch) and C(after_rollback).
  - A relative path is taken from O(base) (the app role passes the inventory's directory). An
    unknown stage, or a path that is not a file on the controller, is refused with what was found.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The hooks, C(app_hooks).
    type: raw
    required: true
  base:
    description: The directory relative paths are taken from.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: The task files of the hooks that run after the migrations
  ansible.builtin.debug:
    msg: "{{ (app_hooks | slipway.django.app_hooks(inventory_dir)).after_migrate }}"
"""

RETURN = r"""
_value:
  description: Every stage, each with the list of its task files' absolute paths.
  type: dict
"""

import os

from ansible.errors import AnsibleFilterError

STAGES = ("before_build", "after_build", "before_migrate", "after_migrate", "before_switch",
          "after_switch", "after_rollback")


def app_hooks(hooks, base):
    found = {stage: [] for stage in STAGES}
    if hooks in (None, ""):
        return found
    if not isinstance(hooks, dict):
        raise AnsibleFilterError(
            f"app_hooks must be a mapping of a stage to a task file or a list of them, e.g. "
            f"{{after_migrate: hooks/warm_cache.yml}}; found {type(hooks).__name__}")
    unknown = sorted(str(stage) for stage in hooks if stage not in STAGES)
    if unknown:
        raise AnsibleFilterError(f"app_hooks: unknown stages {', '.join(unknown)}; the stages "
                                 f"are {', '.join(STAGES)}")
    for stage, files in hooks.items():
        files = [] if files is None else [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not all(isinstance(name, str) and name
                                                  for name in files):
            raise AnsibleFilterError(f"app_hooks.{stage} must be a task file or a list of "
                                     f"them; found {files!r}")
        for name in files:
            path = os.path.normpath(os.path.join(str(base), os.path.expanduser(name)))
            if not os.path.isfile(path):
                raise AnsibleFilterError(
                    f"app_hooks.{stage}: {name} is not a file on the controller (looked for "
                    f"{path}; relative paths are taken from the inventory's directory, {base})")
            found[stage].append(path)
    return found


class FilterModule:
    def filters(self):
        return {"app_hooks": app_hooks}
