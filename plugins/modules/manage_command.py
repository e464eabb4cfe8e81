#!/usr/bin/python
# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: manage_command
short_description: Run one manage.py command of an app's current release
description:
  - Splits O(command) into arguments with POSIX shell quoting rules (no shell ever runs it) and
    checks that its first word is a manage.py command name, then asks C(manage.py help COMMAND)
    whether the app knows the command.
  - With O(dry_run=true), refuses a command whose help lists no C(--dry-run) option, and adds
    C(--dry-run) to one that does.
  - Runs the command through O(manage), the app's wrapper that runs manage.py of the current
    release as the app user with the app's environment (its secrets are read inside that
    process, never put on a command line), and returns its output and return code.
version_added: "0.2.0"
author:
  - slipway developers (@slipway)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Checks the command (and its C(--dry-run) option) and returns the arguments it would
      run, without running it.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  command:
    description:
      - One manage.py command line, without C(python manage.py), e.g. C(backfill_po --days 7).
    type: str
    required: true
  dry_run:
    description:
      - Run the command with C(--dry-run); refused when the command does not take it.
    type: bool
    default: false
  manage:
    description:
      - The app's manage.py wrapper on the host (the app role's C(APP_ROOT/bin/manage)).
    type: path
    required: true
  check_only:
    description:
      - Only check the command (name, known to the app, C(--dry-run)) and return its arguments.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Check a backfill before taking the deploy lock
  slipway.django.manage_command:
    command: backfill_po --days 7 --limit 10
    dry_run: true
    manage: /srv/mes/bin/manage
    check_only: true

- name: Run it
  slipway.django.manage_command:
    command: backfill_po --days 7 --limit 10
    dry_run: true
    manage: /srv/mes/bin/manage
"""

RETURN = r"""
argv:
  description: The arguments given to manage.py, C(--dry-run) included when it was added.
  returned: always
  type: list
  elements: str
  sample: [backfill_po, --dry-run, --days, "7", --limit, "10"]
command_line:
  description: O(command) as it ran, RV(argv) quoted like a shell would quote it.
  returned: always
  type: str
  sample: backfill_po --dry-run --days 7 --limit 10
rc:
  description: The command's return code.
  returned: when the command ran
  type: int
  sample: 0
stdout:
  description: What the command printed on its standard output.
  returned: when the command ran
  type: str
  sample: "Would backfill 10 orders"
stderr:
  description: What the command printed on its standard error.
  returned: when the command ran
  type: str
  sample: ""
ran:
  description: Whether the command ran (not in check mode, nor with O(check_only)).
  returned: always
  type: bool
  sample: true
"""

import os  # noqa: E402
import shlex  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.slipway.django.plugins.module_utils.manage_command import (  # noqa: E402
    CommandError,
    accepts_dry_run,
    parse_command,
    with_dry_run,
)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join((text or "").strip().splitlines()[-lines:])


def checked_argv(module: AnsibleModule, argv: list[str], dry_run: bool, manage: str) -> list[str]:
    """argv once the app knows the command (and takes --dry-run when asked)."""
    name = argv[0]
    rc, out, err = module.run_command([manage, "help", name])
    if rc != 0:
        module.fail_json(msg=f"The app does not know the manage.py command {name!r} (manage.py "
                             f"help {name} exited with {rc}: {_tail(err or out, 3)}). Nothing "
                             "was run; check the name with 'manage.py help'.", argv=argv)
    if not dry_run:
        return argv
    if not accepts_dry_run(out):
        module.fail_json(msg=f"The manage.py command {name!r} does not accept --dry-run (its "
                             "help lists no such option), so it cannot run as a dry run. "
                             "Nothing was run; run it without dry_run=true once you are sure, "
                             "or give the command a --dry-run option.", argv=argv)
    return with_dry_run(argv)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "command": {"type": "str", "required": True},
            "dry_run": {"type": "bool", "default": False},
            "manage": {"type": "path", "required": True},
            "check_only": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        argv = parse_command(params["command"])
    except CommandError as exc:
        module.fail_json(msg=f"{exc}. Nothing was run.")
    manage = params["manage"]
    if not os.access(manage, os.X_OK):
        module.fail_json(msg=f"There is no manage.py wrapper at {manage}: is the app deployed "
                             "on this host? Nothing was run.", argv=argv)
    argv = checked_argv(module, argv, params["dry_run"], manage)
    if params["check_only"] or module.check_mode:
        module.exit_json(changed=False, argv=argv, command_line=shlex.join(argv), ran=False)
    rc, out, err = module.run_command([manage, *argv])
    result = {"argv": argv, "command_line": shlex.join(argv), "rc": rc, "stdout": out,
              "stderr": err, "ran": True,
              # A dry run changes nothing; another command may have changed anything.
              "changed": not params["dry_run"]}
    if rc != 0:
        module.fail_json(msg=f"manage.py {argv[0]} exited with {rc}: {_tail(err or out, 5)}",
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
