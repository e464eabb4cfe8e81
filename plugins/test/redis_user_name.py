# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: redis_user_name
short_description: Whether a name can be an app's Redis (or Valkey) ACL user
version_added: "0.2.0"
description:
  - True when the name starts with a letter and holds only letters, digits, C(_), C(.) and
    C(-), at most 64 characters, and is not one of the users the redis role keeps for itself
    (C(default), C(slipway-admin)).
  - The name is written into the server's ACL file and names a file in its C(users.d)
    directory, so no space, no line break, no C(/) and nothing an ACL rule would read as an
    operator.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The user name.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a Redis user name the ACL file cannot hold
  ansible.builtin.assert:
    that: app_redis_user is slipway.django.redis_user_name
"""

RETURN = r"""
_value:
  description: Whether the name is accepted.
  type: bool
"""

import re

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
RESERVED = frozenset({"default", "slipway-admin"})


def redis_user_name(name) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None and name not in RESERVED


class TestModule:
    def tests(self):
        return {"redis_user_name": redis_user_name}
