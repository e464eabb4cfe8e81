#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: notify
short_description: Send a deploy notification to an environment's targets
description:
  - Sends one event (for instance V(approval_needed)) to the notification targets of an
    environment, the list the inventory gives as C(slipway_notifications) (signed webhooks,
    Slack, email over STARTTLS, DingTalk and WeCom), as the C(slipway.django.deploy_history)
    callback sends the events of a run.
  - Runs on the controller only (an action plugin); it needs the collection's Python package
    (C(slipway)) in the Python that runs Ansible.
  - Each send takes at most 5 seconds and is retried once. A target that cannot be reached is
    reported in RV(outcomes) and as a warning; it never fails the task. A malformed O(targets)
    is a warning too, and nothing is sent.
  - The targets' secrets never appear in the result.
version_added: "0.2.0"
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
    support: none
    details: The notification is sent in check mode too.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  event:
    description:
      - The event to send. Only the targets whose C(events) name it get a message.
    type: str
    required: true
    choices: [started, succeeded, failed, rolled_back, cancelled, approval_needed]
  targets:
    description:
      - The notification targets, as in C(slipway_notifications) (a list of mappings with
        C(type), C(url) or C(address), C(events), C(secret) and the C(smtp_*) keys).
    type: list
    elements: dict
    required: true
  environment:
    description:
      - The environment the message names.
    type: str
  who:
    description:
      - Who the message names (for V(approval_needed), who asked for the run).
    type: str
  branch:
    description:
      - The branch the message names.
    type: str
  detail:
    description:
      - A line of detail (for V(approval_needed), what waits for an approval).
    type: str
  run_url:
    description:
      - A link the message gives (for instance the console's approvals page).
    type: str
notes:
  - Mark the task C(no_log) only if you do not need RV(outcomes); the options are never part of
    the result.
seealso:
  - plugin: slipway.django.deploy_history
    plugin_type: callback
"""

EXAMPLES = r"""
- name: Tell the environment's targets a deploy waits for an approval
  slipway.django.notify:
    event: approval_needed
    targets: "{{ slipway_notifications | default([]) }}"
    environment: production
    who: alice
    branch: main
    detail: deploy of main held for approval 12
    run_url: https://deploy.example.org/approvals
  run_once: true
"""

RETURN = r"""
outcomes:
  description: One entry per target that takes the event, without secrets.
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description:
        - The target's type and host (an email's addresses and server), without path, query
          or credentials.
      type: str
      sample: webhook https://hooks.example
    event:
      description: The event sent.
      type: str
      sample: approval_needed
    delivered:
      description: Whether the receiver took the message.
      type: bool
      sample: true
    attempts:
      description: How many sends were tried.
      type: int
      sample: 1
    detail:
      description: The receiver's answer or why it was not delivered.
      type: str
      sample: delivered (HTTP 204)
  sample: [{target: webhook https://hooks.example, event: approval_needed,
            delivered: true, attempts: 1, detail: delivered (HTTP 204)}]
delivered:
  description: How many targets took the message.
  returned: always
  type: int
  sample: 1
"""
