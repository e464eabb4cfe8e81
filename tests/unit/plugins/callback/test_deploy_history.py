from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.callback.deploy_history import (
    CallbackModule,
    _inventory_environment,
)


@pytest.mark.parametrize(("sources", "environment"), [
    (("inventories/production/hosts.yml",), "production"),
    (("inventories/staging",), "staging"),
    (("localhost,",), None),
    ((), None),
])
def test_default_environment_is_the_inventory_directory(
        tmp_path, monkeypatch, sources, environment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventories" / "production").mkdir(parents=True)
    (tmp_path / "inventories" / "production" / "hosts.yml").write_text("all: {}\n")
    (tmp_path / "inventories" / "staging").mkdir()

    assert _inventory_environment(sources) == environment


@pytest.mark.parametrize(("status", "changed", "message", "line"), [
    ("ok", False, "", "ok: [web1]\n"),
    ("ok", True, "", "changed: [web1]\n"),
    ("skipped", False, "", "skipping: [web1]\n"),
    ("failed", False, "boom", "fatal: [web1]: FAILED! => boom\n"),
    ("ignored", False, "boom", "fatal: [web1]: FAILED! => boom\n...ignoring\n"),
    ("unreachable", False, "refused", "fatal: [web1]: UNREACHABLE! => refused\n"),
])
def test_log_lines_read_like_the_default_output(status, changed, message, line):
    assert CallbackModule._result_line("web1", status, changed, message) == line


@pytest.mark.parametrize(("data", "status", "action", "message"), [
    ({"msg": "boom", "stderr": "trace"}, "failed", "ansible.builtin.command", "boom\ntrace"),
    ({"msg": {"a": 1}}, "ok", "ansible.builtin.debug", '{"a": 1}'),
    ({"stdout": "lots"}, "ok", "ansible.builtin.command", ""),
    ({"msg": "unreachable"}, "unreachable", "ansible.builtin.ping", "unreachable"),
])
def test_task_messages_keep_what_explains_the_outcome(data, status, action, message):
    assert CallbackModule._message(data, status, action) == message


def test_a_command_run_records_its_command_line_return_code_and_output():
    callback = CallbackModule()
    submitted = []
    callback._submit = lambda kind, payload: submitted.append((kind, payload))

    callback._publish({"slipway_kind": "command", "slipway_command": "backfill_po --days 7"})
    callback._publish({"slipway_command_rc": 3, "slipway_command_output": "x" * 70000 + "end"})

    assert submitted == [
        ("update", {"kind": "command", "command": "backfill_po --days 7"}),
        ("update", {"command_rc": 3, "command_output": ("x" * 70000 + "end")[-65536:]}),
    ]
