# -*- coding: utf-8 -*-
# Copyright: slipway developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module-side half of slipway.django.migrations: find the app's python, run the helper, and
turn its answer into the module's result. Runs under the host's python; never imports Django."""

from __future__ import absolute_import, division, print_function

import inspect
import json
import os
import re

from ansible_collections.slipway.django.plugins.module_utils import django_migrations_helper

SETTINGS_IN_MANAGE_PY = re.compile(
    r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")


class InputError(Exception):
    """Bad module input, found before anything runs."""


def helper_source():
    """The helper's source text, sent to the app's python with ``-c``."""
    return inspect.getsource(django_migrations_helper)


def python_for(virtualenv, path_lookup):
    """The interpreter that runs Django: ``<virtualenv>/bin/python``, else python3 on PATH."""
    if virtualenv:
        python = os.path.join(virtualenv, 'bin', 'python')
        if not os.access(python, os.X_OK):
            found = 'does not exist' if not os.path.exists(virtualenv) else 'has no bin/python'
            raise InputError(f'virtualenv {virtualenv} {found}; point virtualenv at the '
                             "directory holding the app's bin/python (e.g. "
                             '/srv/APP/releases/ID/venv).')
        return python
    python = path_lookup('python3') or path_lookup('python')
    if not python:
        raise InputError('No virtualenv given and no python3 on PATH; set virtualenv to the '
                         "app's virtualenv.")
    return python


def settings_from_manage_py(text):
    """The default DJANGO_SETTINGS_MODULE that a manage.py sets, or None."""
    match = SETTINGS_IN_MANAGE_PY.search(text)
    return match.group(1) if match else None


def helper_environment(project_path, settings, environment):
    """Environment variables for the helper: the app's own, plus its settings module."""
    env = dict((str(name), str(value)) for name, value in (environment or {}).items())
    if settings:
        env['DJANGO_SETTINGS_MODULE'] = settings
    elif 'DJANGO_SETTINGS_MODULE' not in env and not os.environ.get('DJANGO_SETTINGS_MODULE'):
        manage_py = os.path.join(project_path, 'manage.py')
        with open(manage_py) as handle:
            default = settings_from_manage_py(handle.read())
        if default:
            env['DJANGO_SETTINGS_MODULE'] = default
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    return env


def check_project(project_path):
    manage_py = os.path.join(project_path, 'manage.py')
    if not os.path.isfile(manage_py):
        found = 'does not exist' if not os.path.isdir(project_path) else \
            'exists but holds no manage.py'
        raise InputError(f'project_path {project_path} {found}; point it at the directory '
                         'holding manage.py (e.g. /srv/APP/current).')


def parse_helper_answer(python, rc, stdout, stderr):
    """The helper's JSON answer; an InputError with its stderr when there is none."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        tail = '\n'.join((stderr or '').strip().splitlines()[-15:])
        raise InputError(f'The migration helper run by {python} exited with {rc} without an '
                         f'answer. Is it a working Python 3 with Django? Its stderr ends '
                         f'with:\n{tail}') from None
    if not isinstance(answer, dict):
        raise InputError(f'The migration helper run by {python} answered {stdout[:200]!r}.')
    return answer


def rows_diff(recorded_before, recorded_after):
    """The django_migrations rows a run removes (before) and adds (after), as diff text."""
    before, after = set(recorded_before), set(recorded_after)
    removed = sorted(before - after)
    added = sorted(after - before)
    return {
        'before_header': 'django_migrations (rows removed)',
        'after_header': 'django_migrations (rows added)',
        'before': ''.join(f'{row}\n' for row in removed),
        'after': ''.join(f'{row}\n' for row in added),
    }


def count_actions(plan):
    counts = {}
    for step in plan:
        counts[step['action']] = counts.get(step['action'], 0) + 1
    return counts


def summary(answer, action, check_mode):
    """One line saying what was found and what was (or would be) done."""
    counts = count_actions(answer.get('plan', []))
    found = (f"{len(answer.get('inconsistent', []))} inconsistent, "
             f"{len(answer.get('drift', []))} drifted, {len(answer.get('pending', []))} pending, "
             f"{len(answer.get('unsafe', []))} unsafe")
    if not counts:
        return f'Migration history is consistent and nothing is pending ({found}).'
    done = ', '.join(f'{number} {name}' for name, number in sorted(counts.items()))
    if action == 'diagnose':
        verb = 'migrate would do'
    elif check_mode:
        verb = 'would do'
    else:
        verb = 'did'
    assumed = answer.get('assumed', [])
    if assumed:
        done += (f' ({len(assumed)} RunPython/RunSQL operation(s) of recorded lost history '
                 'assumed applied, cannot be checked)')
    return f'{found}; {verb}: {done}.'


def refusal_message(refused):
    reasons = ' '.join(entry['reason'] for entry in refused)
    return f'Safe repair refused, nothing was changed: {reasons}'


def unsafe_message(unsafe):
    lines = '; '.join(f"{item['migration']} {item['operation']}: {item['reason']}"
                      for item in unsafe)
    return (f'Pending migrations contain {len(unsafe)} unsafe operation(s) and '
            f'unsafe_operations=fail, nothing was changed: {lines}')


def irreversible_message(irreversible):
    lines = '; '.join(f"{item['migration']} ({', '.join(item['operations'])})"
                      for item in irreversible)
    return (f'{len(irreversible)} migration(s) to unapply cannot be reversed, nothing was '
            f'changed: {lines}. Restore a backup taken before them instead.')
