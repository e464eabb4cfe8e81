from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.slipway.django.plugins.callback.deploy_history import (
    CallbackModule,
    _inventory_environment,
)

ROOT = Path(__file__).resolve().parents[4]


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


# Without the slipway package

# ansible-playbook in a Python where `import slipway` fails (a None entry in sys.modules makes
# every import of it raise ImportError), with the callback enabled by the checkout's ansible.cfg.
WITHOUT_SLIPWAY = """
import sys
sys.modules["slipway"] = None
from ansible.cli.playbook import main
sys.argv = ["ansible-playbook", *sys.argv[1:]]
main()
"""


def test_without_the_slipway_package_the_run_goes_on_with_one_warning(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug:\n        msg: hello\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_CALLBACKS_ENABLED": "slipway.django.deploy_history",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
           "ANSIBLE_INVENTORY": "localhost,", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_NOCOLOR": "1"}

    result = subprocess.run([sys.executable, "-c", WITHOUT_SLIPWAY, "-c", "local",
                             str(playbook)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120, check=False)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ok=1" in result.stdout
    assert "Traceback" not in output
    warnings = [line for line in output.splitlines() if "deploy history" in line]
    assert len(warnings) == 1, output
    # The whole warning (Ansible wraps long lines) says what is missing and how to install it.
    text = " ".join(output.split())
    assert "the slipway Python package" in text
    assert f"-m pip install {ROOT}" in text
