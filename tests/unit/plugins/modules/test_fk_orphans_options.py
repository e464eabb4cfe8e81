"""Option checks of slipway.django.fk_orphans that run before it connects."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.slipway.django.plugins.modules import fk_orphans

VALID = dict(relations=[{"table": "a"}], discover=False, login_db="app", batch_size=5000,
             max_fraction=0.1, add_constraint=False, action="report", lock_timeout=2.0,
             lock_retries=5)


@pytest.mark.parametrize(("changes", "complaint"), [
    ({}, None),
    ({"relations": None, "discover": True}, None),
    ({"discover": True}, "not both"),
    ({"relations": []}, "either relations"),
    ({"login_db": None}, "login_db is required"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"max_fraction": 1.5}, "max_fraction must be between 0 and 1"),
    ({"add_constraint": True}, "add_constraint=true changes the schema"),
    ({"add_constraint": True, "action": "archive"}, None),
    ({"lock_retries": -1}, "lock_retries not negative"),
])
def test_option_errors_explain_each_invalid_combination(changes, complaint):
    errors = fk_orphans.option_errors({**VALID, **changes})
    if complaint is None:
        assert errors == []
    else:
        assert len(errors) == 1 and complaint in errors[0]


def test_every_relation_key_is_documented():
    documented = yaml.safe_load(fk_orphans.DOCUMENTATION)["options"]["relations"]["suboptions"]
    spec = fk_orphans.argument_spec()["relations"]["options"]
    assert sorted(documented) == sorted(spec)
