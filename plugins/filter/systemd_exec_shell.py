# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_exec_shell
short_description: An ExecStart value that runs a shell script through /bin/sh
version_added: "0.2.0"
description:
  - Returns C(/bin/sh -c "SCRIPT") quoted for a systemd unit. systemd's specifiers (%) and
    variables ($), quotes and backslashes are escaped, so the shell reads the script exactly as
    written and expands its C($VARIABLES) itself, from the unit's environment.
  - The app role's process units run C(PATH="$(pwd -P)/venv/bin:$PATH" && exec COMMAND), which
    puts the release's own virtualenv (the working directory resolved, not the current symlink)
    first on PATH and makes the program the unit's main process, so that it gets systemd's stop
    signal.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The shell script (one line).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Show the ExecStart of a process
  ansible.builtin.debug:
    msg: "ExecStart={{ 'exec python manage.py sendalerts' | slipway.django.systemd_exec_shell }}"
"""

RETURN = r"""
_value:
  description: The ExecStart value.
  type: str
"""


def systemd_exec_shell(script):
    """ExecStart's value running SCRIPT as `/bin/sh -c 'SCRIPT'`, quoted for systemd:
    systemd's own specifiers (%) and variables ($) are escaped, so the shell sees the script
    exactly as written (and expands $VARIABLES itself, from the unit's environment)."""
    quoted = (script.replace("\\", "\\\\").replace('"', '\\"')
              .replace("%", "%%").replace("$", "$$"))
    return f'/bin/sh -c "{quoted}"'


class FilterModule:
    def filters(self):
        return {"systemd_exec_shell": systemd_exec_shell}
