"""app_processes: entries checked, completed and named; commands quoted for systemd."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.slipway.django.plugins.filter.app_processes import app_processes
from ansible_collections.slipway.django.plugins.filter.systemd_exec_shell import (
    systemd_exec_shell,
)

RESERVED = ["celery", "celerybeat"]


def run(entries, hostname="app1"):
    return app_processes(entries, "shop", hostname, reserved=RESERVED)


def test_an_entry_gets_defaults_and_runs_in_the_slots():
    [entry] = run([{"name": "alerts", "command": "python manage.py sendalerts"}])
    assert entry == {"name": "alerts", "command": "python manage.py sendalerts", "instances": 1,
                     "stop_timeout": 30, "hosts": None, "overlap": True,
                     "unit_file": "shop-alerts@.service", "units": [],
                     "slot_units": {"blue": ["shop-alerts@blue.service"],
                                    "green": ["shop-alerts@green.service"]},
                     "here": True}


def test_instances_are_numbered_within_each_slot():
    [entry] = run([{"name": "rq", "command": "rq worker", "instances": "3", "stop_timeout": 90}])
    assert entry["unit_file"] == "shop-rq@.service"
    assert entry["slot_units"]["green"] == ["shop-rq@green-1.service", "shop-rq@green-2.service",
                                            "shop-rq@green-3.service"]
    assert entry["stop_timeout"] == 90


def test_a_singleton_has_a_plain_unit_or_numbered_instances():
    [entry] = run([{"name": "clock", "command": "python clock.py", "overlap": False}])
    assert (entry["unit_file"], entry["units"]) == ("shop-clock.service", ["shop-clock.service"])
    assert entry["slot_units"] == {"blue": [], "green": []}
    [entry] = run([{"name": "rq", "command": "rq worker", "instances": 2, "overlap": False}])
    assert (entry["unit_file"], entry["units"]) == ("shop-rq@.service",
                                                    ["shop-rq@1.service", "shop-rq@2.service"])


def test_hosts_pin_an_entry():
    entries = [{"name": "alerts", "command": "x", "hosts": ["app2"], "overlap": False}]
    assert run(entries, "app1")[0]["units"] == [] and not run(entries, "app1")[0]["here"]
    assert run(entries, "app2")[0]["units"] == ["shop-alerts.service"]
    assert run([{"name": "alerts", "command": "x", "hosts": []}])[0]["here"] is False
    assert run([{"name": "alerts", "command": "x", "hosts": ["app2"]}], "app1")[0]["slot_units"] \
        == {"blue": [], "green": []}


def test_predefined_entries_may_take_reserved_names():
    entries = [{"name": "celery", "command": "celery worker", "predefined": True},
               {"name": "celerybeat", "command": "celery beat", "predefined": True,
                "overlap": False}]
    assert [entry["unit_file"] for entry in run(entries)] == ["shop-celery@.service",
                                                              "shop-celerybeat.service"]


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "Send_Alerts", "command": "x"}], "lower-case letters"),
    ([{"name": "-x", "command": "x"}], "lower-case letters"),
    ([{"command": "x"}], "lower-case letters"),
    ([{"name": "a", "command": "x"}, {"name": "a", "command": "y"}], "same name as entry 1"),
    ([{"name": "celery", "command": "x"}], "predefined Celery"),
    ([{"name": "celerybeat", "command": "x"}], "predefined Celery"),
    ([{"name": "a"}], "has no command"),
    ([{"name": "a", "command": "  "}], "has no command"),
    ([{"name": "a", "command": "x", "instances": 0}], "instances=0"),
    ([{"name": "a", "command": "x", "instances": "two"}], "instances='two'"),
    ([{"name": "a", "command": "x", "stop_timeout": True}], "stop_timeout=True"),
    ([{"name": "a", "command": "x", "hosts": "app1"}], "hosts='app1'"),
    ([{"name": "a", "command": "x", "host": ["app1"]}], "unknown keys: host"),
    ([{"name": "a", "command": "x", "overlap": "no"}], "overlap='no'"),
    ([{"name": "a", "command": "migrate && serve"}], "chains or redirects programs (&&)"),
    ([{"name": "a", "command": "serve | tee log"}], "(|)"),
    ([{"name": "a", "command": "serve > log"}], "(>)"),
    ([{"name": "a", "command": "a\nb"}], "line break"),
    ([{"name": "a", "command": "python -c 'x"}], "cannot read"),
    ([{"name": "a", "command": "DEBUG=1 python x"}], "variable assignment (DEBUG=)"),
    (["a"], "is not a dict"),
    ("a", "must be a list"),
])
def test_bad_entries_fail_with_a_message_naming_them(entries, message):
    with pytest.raises(AnsibleFilterError) as error:
        run(entries)
    assert message in str(error.value)


def test_quoted_operators_are_part_of_the_program_line():
    [entry] = run([{"name": "a", "command": "python -c 'import x; x.run() or 1 > 0'"}])
    assert entry["slot_units"]["blue"] == ["shop-a@blue.service"]


def test_the_shell_line_is_escaped_for_systemd():
    line = systemd_exec_shell("exec python manage.py run")
    assert line == '/bin/sh -c "exec python manage.py run"'
    line = systemd_exec_shell('''exec python -c "print('%d' % 1, r'\\n')" --dir $HOME''')
    assert line == ('/bin/sh -c "exec python -c \\"print(\'%%d\' %% 1, r\'\\\\n\')\\" '
                    '--dir $$HOME"')


def test_systemd_unquotes_the_line_back_to_the_command():
    """The escaped line, read back as systemd reads an ExecStart (C escapes in double quotes,
    %% and $$), gives sh the command exactly."""
    command = '''python -c "import os; print('%s' % os.environ['HOME'], '\\\\')" $X'''
    quoted = systemd_exec_shell(command)[len('/bin/sh -c "'):-1]
    read, i = [], 0
    while i < len(quoted):
        pair = quoted[i:i + 2]
        if pair in ('\\\\', '\\"', "%%", "$$"):
            read.append(pair[1])
            i += 2
        else:
            assert quoted[i] not in '"\\%$', quoted[i:]
            read.append(quoted[i])
            i += 1
    assert "".join(read) == command
