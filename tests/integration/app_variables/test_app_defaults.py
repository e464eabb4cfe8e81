"""The app role's own defaults fit its argument spec and the preflight role's checks: a user who
sets only the required variables (and nothing of an optional feature, such as app_frontend) passes
the checks the preflight role runs before any host is changed. Each case runs the preflight
role's app_variables.yml (which includes the app role's validate.yml) in its own ansible-playbook
process on localhost."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ansible_task import run_playbook  # noqa: E402

REQUIRED = {"app_name": "shop", "app_source": "/srv/src/shop", "app_db_password": "x" * 32}


def argument_errors(**variables) -> list[str]:
    """The messages of the checks that failed (the first failure stops the play)."""
    play = {"hosts": "localhost", "gather_facts": False, "vars": {**REQUIRED, **variables},
            "tasks": [{"name": "Check the app's variables",
                       "ansible.builtin.include_role": {"name": "slipway.django.preflight",
                                                        "tasks_from": "app_variables.yml"}}]}
    report = run_playbook([play])
    return [result.get("msg") for task in report["plays"][0]["tasks"]
            for result in task["hosts"].values() if result.get("failed")]


@pytest.mark.parametrize("variables", [
    {"app_secret_key": "k" * 50},
    {"app_framework": "python", "app_asgi_application": "app.main:app"},
], ids=["django", "python"])
def test_the_defaults_fit_the_spec(variables):
    assert argument_errors(**variables) == []


def test_a_wrong_url_prefix_is_refused():
    errors = argument_errors(app_framework="python", app_url_prefix="/shop/../admin")
    assert len(errors) == 1 and '"/shop/../admin"' in errors[0], errors


def test_a_wrong_value_is_named():
    errors = argument_errors(app_framework="python", app_frontend={"output": 3, "colour": "x"})
    assert len(errors) == 1 and "app_frontend.colour" in errors[0], errors
