# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: app_processes
short_description: Check the app's long-running processes and name their systemd units
version_added: "0.2.0"
description:
  - Takes the app's process entries (the predefined Celery ones, then C(app_processes)), checks
    them and returns them complete (defaults filled in, the unit file to install, and the units
    to run on the given host).
  - An entry runs in the web server's slots by default (C(overlap)). Its template unit
    C(APP-NAME@.service) runs as C(APP-NAME@blue.service) or C(APP-NAME@green.service) (with
    C(instances) above 1, C(APP-NAME@blue-1.service) to C(APP-NAME@blue-N.service)), so that a
    switch starts the new release's processes before the old ones are told to stop.
  - An entry with C(overlap=false) is a singleton (Celery beat), stopped, then started on the
    new release. Its unit is C(APP-NAME.service), or with C(instances) above 1 the template unit
    C(APP-NAME@.service) run as C(APP-NAME@1.service) to C(APP-NAME@N.service).
  - Fails with a message naming the entry on a name that is not C([a-z0-9-]), a duplicate name,
    a missing command, a command that is not one program line, or a bad number.
author:
  - slipway developers (@slipway)
options:
  _input:
    description: The entries, each C({name, command, instances, stop_timeout, hosts, overlap}).
    type: list
    elements: dict
    required: true
  app_name:
    description: The app's name (the units' prefix).
    type: str
    required: true
  hostname:
    description: The inventory hostname the units are computed for.
    type: str
    required: true
  reserved:
    description: Names only the predefined entries may take (C(celery), C(celerybeat)).
    type: list
    elements: str
    default: []
  slots:
    description: The web server's slots, in which the entries that overlap run.
    type: list
    elements: str
    default: [blue, green]
"""

EXAMPLES = r"""
- name: The units of this host
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'alerts', 'command': 'python manage.py sendalerts'}]
         | slipway.django.app_processes('shop', inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: >-
    The entries with C(instances), C(stop_timeout), C(hosts) (null for every host), C(overlap),
    C(unit_file), C(here), C(units) (a singleton's units on the host, empty where it is not
    pinned or where the entry overlaps) and C(slot_units) (an overlapping entry's units on the
    host, by slot).
  type: list
  elements: dict
"""

import re
import shlex

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
KEYS = {"name", "command", "instances", "stop_timeout", "hosts", "overlap", "predefined"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")", "<", ">", ">>", "<<", "<&", ">&",
                   ">|", "<>"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _fail(entry_label, problem, fix):
    raise AnsibleFilterError(f"app_processes: {entry_label} {problem}. {fix}")


def check_command(command, label):
    """A command is one program line run as `exec COMMAND` by /bin/sh: no chain or pipe."""
    if not isinstance(command, str) or not command.strip():
        _fail(label, f"has no command (found {command!r})",
              "Give it a command line, e.g. 'python manage.py sendalerts'.")
    if "\n" in command or "\r" in command or "\0" in command:
        _fail(label, "has a command with a line break",
              "Write the command on one line, or put the steps in a script of the app.")
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        _fail(label, f"has a command the shell cannot read ({exc}): {command!r}",
              "Close its quotes.")
    operators = sorted({token for token in tokens if token in SHELL_OPERATORS})
    if operators:
        _fail(label, f"chains or redirects programs ({' '.join(operators)}): {command!r}",
              "A process is one program (run by `exec`, so that it gets systemd's SIGTERM "
              "itself): put a chain or a pipe in a script of the app and run the script.")
    if tokens and ASSIGNMENT.match(tokens[0]):
        _fail(label, f"starts with a variable assignment ({tokens[0].split('=')[0]}=): "
              f"{command!r}", "Set environment variables in app_env instead.")


def _int(entry, key, default, label, minimum):
    value = entry.get(key, default)
    if value is None:
        value = default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or str(number) != str(value).strip() \
            or number < minimum:
        _fail(label, f"has {key}={value!r}", f"{key} must be a whole number of at least {minimum}.")
    return number


def app_processes(entries, app_name, hostname, reserved=None, slots=("blue", "green")):
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise AnsibleFilterError(f"app_processes must be a list of {{name, command}} entries, "
                                 f"found {type(entries).__name__}")
    reserved = set(reserved or [])
    seen = {}
    result = []
    for position, entry in enumerate(entries, start=1):
        label = f"entry {position}"
        if not isinstance(entry, dict):
            _fail(label, f"is not a dict (found {entry!r})",
                  "Each entry is {name: ..., command: ...}.")
        name = entry.get("name")
        label = f"entry {position} ({name!r})"
        unknown = sorted(set(entry) - KEYS)
        if unknown:
            _fail(label, f"has unknown keys: {', '.join(map(str, unknown))}",
                  "The keys are name, command, instances, stop_timeout, hosts and overlap.")
        if not isinstance(name, str) or not NAME.match(name):
            _fail(label, "has a name that is not lower-case letters, digits and inner dashes",
                  "Name it like 'sendalerts' or 'rq-worker' (it becomes the unit "
                  f"{app_name}-NAME.service).")
        if name in seen:
            _fail(label, f"has the same name as entry {seen[name]}",
                  "Give each process a name of its own.")
        if name in reserved and not entry.get("predefined"):
            _fail(label, f"takes the name {name!r}, which is the predefined Celery process's",
                  "Choose another name (the Celery worker and beat are set with "
                  "app_celery_enabled and app_celerybeat_host).")
        seen[name] = position
        check_command(entry.get("command"), label)
        instances = _int(entry, "instances", 1, label, 1)
        stop_timeout = _int(entry, "stop_timeout", 30, label, 1)
        hosts = entry.get("hosts")
        if hosts is not None and (not isinstance(hosts, list)
                                  or not all(isinstance(host, str) for host in hosts)):
            _fail(label, f"has hosts={hosts!r}",
                  "hosts is a list of inventory hostnames (leave it out for every app host).")
        overlap = entry.get("overlap", True)
        if not isinstance(overlap, bool):
            _fail(label, f"has overlap={overlap!r}",
                  "overlap is true (the new release's process starts before the old one stops) "
                  "or false (a singleton, such as a scheduler: stopped, then started).")
        here = hosts is None or hostname in hosts
        numbers = [str(number) for number in range(1, instances + 1)] if instances > 1 else [""]
        if overlap:
            unit_file = f"{app_name}-{name}@.service"
            units = []
            slot_units = {slot: [f"{app_name}-{name}@{slot}{'-' + number if number else ''}.service"
                                 for number in numbers] if here else [] for slot in slots}
        else:
            unit_file = f"{app_name}-{name}{'@' if instances > 1 else ''}.service"
            units = [f"{app_name}-{name}@{number}.service" if number else unit_file
                     for number in numbers] if here else []
            slot_units = {slot: [] for slot in slots}
        result.append({"name": name, "command": entry["command"].strip(),
                       "instances": instances, "stop_timeout": stop_timeout, "hosts": hosts,
                       "overlap": overlap, "unit_file": unit_file, "units": units,
                       "slot_units": slot_units, "here": here})
    return result


class FilterModule:
    def filters(self):
        return {"app_processes": app_processes}
