"""The app role's own defaults fit its argument spec: a user who sets only the required variables
(and nothing of an optional feature, such as app_frontend) passes the check the preflight role and
the app role run before any host is changed. Each framework's case runs the role's validate.yml
in its own ansible-playbook process on localhost, as the preflight role includes it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ansible_task import run_playbook  # noqa: E402

REQUIRED = {"app_name": "shop", "app_source": "/srv/src/shop", "app_db_password": "x" * 32}


def argument_errors(**variables) -> list[str]:
    play = {"hosts": "localhost", "gather_facts": False, "vars": {**REQUIRED, **variables},
            "tasks": [{"name": "Check the app's variables",
                       "ansible.builtin.include_role": {"name": "slipway.django.app",
                                                        "tasks_from": "validate.yml"}},
                      {"name": "Report", "ansible.builtin.debug": {
                          "msg": "{{ __app_argument_check.argument_errors | default([]) }}"}}]}
    report = run_playbook([play])
    result = report["plays"][0]["tasks"][-1]["hosts"]["localhost"]
    return result["msg"]


@pytest.mark.parametrize("variables", [
    {"app_secret_key": "k" * 50},
    {"app_framework": "python", "app_asgi_application": "app.main:app"},
], ids=["django", "python"])
def test_the_defaults_fit_the_spec(variables):
    assert argument_errors(**variables) == []


def test_a_wrong_value_is_named():
    errors = argument_errors(app_framework="python", app_frontend={"output": 3, "colour": "x"})
    assert any("colour" in error for error in errors), errors
