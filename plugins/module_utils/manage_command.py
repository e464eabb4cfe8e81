# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One-off manage.py commands: split a command line into argv, check its command name, and
tell from ``manage.py help COMMAND`` whether the command takes ``--dry-run``.

Plain Python, shared by the manage_command module and the console (which checks its
allow-list with the same rules when it loads its configuration).
"""

from __future__ import annotations

import re
import shlex

# A manage.py command is a Python module name under management/commands/.
COMMAND_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# --dry-run as an option of the command's own usage or option list (not in a sentence).
_DRY_RUN_OPTION = re.compile(r"(?:^|[\s\[,])--dry-run(?:$|[\s\],=])", re.MULTILINE)
DRY_RUN = "--dry-run"
MAX_LENGTH = 4096


class CommandError(ValueError):
    """A command line that is refused; the message says what was wrong and what to do."""


def parse_command(text: object) -> list[str]:
    """The argv of a command line (shlex, POSIX rules; never a shell), its first word checked."""
    if not isinstance(text, str) or not text.strip():
        raise CommandError("no command given: pass one manage.py command line, for example "
                           "-e 'command=\"backfill_po --days 7\"'")
    if len(text) > MAX_LENGTH:
        raise CommandError(f"the command line is {len(text)} characters long; at most "
                           f"{MAX_LENGTH} are accepted")
    if "\x00" in text or "\n" in text or "\r" in text:
        raise CommandError("the command line holds a NUL or a line break; give one line")
    try:
        argv = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise CommandError(f"cannot split the command line {text!r}: {exc} "
                           "(check its quotes)") from None
    if not argv:
        raise CommandError("no command given: the command line holds only quotes or spaces")
    name = argv[0]
    if any(word.endswith("manage.py") for word in argv[:2]):
        raise CommandError(f"the command line {text!r} names manage.py itself; give only the "
                           "command and its arguments, without 'python manage.py', e.g. "
                           "'backfill_po --days 7'")
    if not COMMAND_NAME.match(name):
        raise CommandError(f"{name!r} is not a manage.py command name (letters, digits and "
                           "'_', not starting with a digit); the command line must start with "
                           "the command, e.g. 'backfill_po --days 7', without 'python manage.py'")
    return argv


def accepts_dry_run(help_text: str) -> bool:
    """Whether ``manage.py help COMMAND`` lists a --dry-run option."""
    return bool(_DRY_RUN_OPTION.search(help_text or ""))


def with_dry_run(argv: list[str]) -> list[str]:
    """argv with --dry-run added after the command name (once)."""
    if DRY_RUN in argv[1:]:
        return list(argv)
    return [argv[0], DRY_RUN, *argv[1:]]
