"""Parsing and checking one-off manage.py command lines (playbooks/manage.yml, the console)."""

from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.module_utils.manage_command import (
    CommandError,
    accepts_dry_run,
    parse_command,
    with_dry_run,
)


@pytest.mark.parametrize(("text", "argv"), [
    ("backfill_po --days 7 --limit 10", ["backfill_po", "--days", "7", "--limit", "10"]),
    ("  check  ", ["check"]),
    ("send_report --to 'ops team' --note \"a b\"",
     ["send_report", "--to", "ops team", "--note", "a b"]),
    # Shell syntax is text to manage.py: no shell ever sees it.
    ("clearsessions ; rm -rf /", ["clearsessions", ";", "rm", "-rf", "/"]),
    ("backfill_po --note '$(id)' `id` | cat", ["backfill_po", "--note", "$(id)", "`id`", "|",
                                               "cat"]),
    ("backfill_po --note '{{ lookup(\"pipe\", \"id\") }}'",
     ["backfill_po", "--note", '{{ lookup("pipe", "id") }}']),
    ("backfill_po # not a comment", ["backfill_po", "#", "not", "a", "comment"]),
])
def test_a_command_line_splits_into_the_argv_a_shell_would_give(text, argv):
    assert parse_command(text) == argv


@pytest.mark.parametrize(("text", "message"), [
    ("", "no command given"),
    ("   ", "no command given"),
    (None, "no command given"),
    (["backfill_po"], "no command given"),
    ("''", "not a manage.py command name"),
    ("python manage.py migrate", "without 'python manage.py'"),
    ("./manage.py migrate", "without 'python manage.py'"),
    ("clearsessions;", "'clearsessions;' is not a manage.py command name"),
    ("--settings=x migrate", "'--settings=x' is not a manage.py command name"),
    ("7days", "'7days' is not a manage.py command name"),
    ("back-fill", "'back-fill' is not a manage.py command name"),
    ("rm\x00 -rf", "NUL or a line break"),
    ("check\nmigrate", "NUL or a line break"),
    ("backfill_po --note 'unclosed", "check its quotes"),
    ("backfill_po " + "x" * 5000, "at most 4096"),
])
def test_a_bad_command_line_is_refused_saying_why(text, message):
    with pytest.raises(CommandError) as error:
        parse_command(text)
    assert message in str(error.value)


DJANGO_HELP_WITH_DRY_RUN = """\
usage: manage.py backfill_po [-h] [--days DAYS] [--limit LIMIT] [--dry-run] [--version]

Backfill purchase orders.

options:
  -h, --help            show this help message and exit
  --days DAYS
  --dry-run             Count what would change; change nothing.
"""
DJANGO_HELP_WITHOUT = """\
usage: manage.py clearsessions [-h] [--version] [-v {0,1,2,3}] [--settings SETTINGS]

Can be run as a cronjob or directly to clean out expired sessions (see --dry-run-free docs,
and never mention a dry-run --dry-runs).
"""


@pytest.mark.parametrize(("help_text", "accepted"), [
    (DJANGO_HELP_WITH_DRY_RUN, True),
    ("usage: manage.py makemigrations [--dry-run] [--merge] [app_label ...]", True),
    ("  --dry-run, -n  Show what would be done", True),
    ("  --dry-run=MODE", True),
    (DJANGO_HELP_WITHOUT, False),
    ("  --no-dry-run  Really do it", False),
    ("", False),
])
def test_dry_run_is_accepted_only_when_the_help_lists_the_option(help_text, accepted):
    assert accepts_dry_run(help_text) is accepted


@pytest.mark.parametrize(("argv", "expected"), [
    (["backfill_po", "--days", "7"], ["backfill_po", "--dry-run", "--days", "7"]),
    (["backfill_po", "--days", "7", "--dry-run"], ["backfill_po", "--days", "7", "--dry-run"]),
    (["makemigrations"], ["makemigrations", "--dry-run"]),
])
def test_dry_run_is_added_once(argv, expected):
    assert with_dry_run(argv) == expected
