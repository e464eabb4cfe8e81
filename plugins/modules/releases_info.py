#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: releases_info
short_description: List an app's releases on a host, their outcomes and the rollback target
description:
  - Reads the releases under O(root)C(/releases) - each built by the app role with its record
    C(.slipway-release.json) - and the outcome of their deploys kept beside it in
    C(.slipway-status.json) (written by M(slipway.django.releases)).
  - Returns every release with its status, which one is current (the target of
    O(root)C(/current)), and the last good one before it (the default rollback target).
  - Changes nothing. A missing O(root) or C(releases/) directory gives no releases, and an
    unreadable or malformed record is read as absent.
  - Replaces O(slipway.django.releases#module:action=list), which is deprecated.
version_added: "0.2.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode returns the same as a normal run.
  diff_mode:
    support: N/A
    details: The module changes nothing.
  platform:
    platforms: posix
options:
  root:
    description:
      - The app's root, holding C(releases/), C(current) and C(shared/).
    type: path
    required: true
seealso:
  - module: slipway.django.releases
    description: Records the outcome of a release's deploy and prunes old releases.
"""

EXAMPLES = r"""
- name: Find the release to roll back to
  slipway.django.releases_info:
    root: /srv/shop
  register: shop_releases

- name: Show the rollback target
  ansible.builtin.debug:
    msg: "{{ shop_releases.previous_good | default('none', true) }}"

- name: Note the releases whose deploy failed
  ansible.builtin.set_fact:
    shop_failed_releases: >-
      {{ shop_releases.releases | selectattr('status', 'equalto', 'failed')
         | map(attribute='id') | list }}
"""

RETURN = r"""
releases:
  description:
    - The releases, the most recently deployed (or built) first.
    - Besides the keys below, each holds what the deploys recorded in its status record, such
      as C(migrations) (the migration state), C(backup) (the backup taken before it),
      C(previous) (the release that ran before) and C(run_id).
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
      wheelhouse: /srv/shop/shared/wheelhouse/1a2b3c4d5e6f-py3.11.2
      migrations: ["shop.0001_initial"]
      backup: 20261123T101500Z-3f2a9c1b
      previous: 1b2c3d4e5f6a
  contains:
    id:
      description: The release's id, the name of its directory under C(releases/).
      type: str
    status:
      description:
        - The outcome of its last deploy - V(succeeded), V(failed) or V(rolled_back) - or,
          when none was recorded, V(built) (it has its build record) or V(incomplete) (its
          build never finished).
      type: str
    current:
      description: Whether C(current) links to it.
      type: bool
    commit:
      description: The commit it was built from, or null.
      type: str
    branch:
      description: The branch it was built from, or null.
      type: str
    built_at:
      description: When it was built, in UTC, or null.
      type: str
    deployed_at:
      description: When it was last deployed, in UTC, or null.
      type: str
    wheelhouse:
      description: The wheelhouse its virtualenv was installed from, or null.
      type: str
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.slipway.django.plugins.module_utils.releases import describe


def main():
    module = AnsibleModule(
        argument_spec=dict(root=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **describe(module.params["root"]))


if __name__ == "__main__":
    main()
