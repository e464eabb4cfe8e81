"""Options of slipway.django.db_backup: documented as declared, checked before any work."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.slipway.django.plugins.doc_fragments.connection import (
    ModuleDocFragment,
)
from ansible_collections.slipway.django.plugins.module_utils.db_backup import option_errors
from ansible_collections.slipway.django.plugins.modules import db_backup

SPEC = db_backup.argument_spec()
DOCUMENTED = {**yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"],
              **yaml.safe_load(db_backup.DOCUMENTATION)["options"]}
VALID = {name: spec.get("default") for name, spec in SPEC.items()}
VALID.update(engine="postgresql", db="app", dest_dir="/var/backups/app")


def test_every_option_is_documented_and_nothing_else():
    assert sorted(DOCUMENTED) == sorted(SPEC)


@pytest.mark.parametrize("option", sorted(SPEC))
@pytest.mark.parametrize("key", ["type", "required", "default", "choices"])
def test_documentation_matches_the_spec(option, key):
    assert DOCUMENTED[option].get(key) == SPEC[option].get(key)


def test_only_the_password_is_hidden_from_logs():
    assert [name for name, spec in SPEC.items() if spec.get("no_log")] == ["login_password"]


@pytest.mark.parametrize(("changes", "complaint"), [
    ({}, None),
    ({"action": "restore", "backup": "20261123T101500Z-1a2b3c4d"}, None),
    ({"login_db": "app"}, None),
    ({"login_db": "postgres"}, "login_db (postgres) differs from db (app)"),
    ({"db": "--all"}, "db must be a database name"),
    ({"dest_dir": "backups"}, "dest_dir must be an absolute path"),
    ({"action": "restore"}, "action=restore needs backup"),
    ({"backup": "20261123T101500Z-1a2b3c4d"}, "backup is only used with action=restore"),
    ({"retention": -1}, "retention must not be negative"),
    ({"free_factor": -0.5}, "free_factor must not be negative"),
    ({"jobs": 0}, "jobs must be at least 1"),
])
def test_option_errors_explain_each_invalid_combination(changes, complaint):
    errors = option_errors({**VALID, **changes})
    if complaint is None:
        assert errors == []
    else:
        assert len(errors) == 1 and complaint in errors[0]
