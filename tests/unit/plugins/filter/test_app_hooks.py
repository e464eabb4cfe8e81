"""The hooks' check: stages, task files found from the inventory's directory, clear refusals."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.slipway.django.plugins.filter.app_hooks import STAGES, app_hooks


@pytest.fixture
def inventory(tmp_path):
    (tmp_path / "hooks").mkdir()
    for name in ("warm.yml", "notify.yml"):
        (tmp_path / "hooks" / name).write_text("- ansible.builtin.debug: {msg: hi}\n")
    return tmp_path


def test_no_hooks_gives_every_stage_empty(inventory):
    assert app_hooks(None, str(inventory)) == {stage: [] for stage in STAGES}
    assert app_hooks({}, str(inventory)) == {stage: [] for stage in STAGES}


def test_relative_files_are_found_from_the_inventory_and_absolute_ones_kept(inventory):
    absolute = str(inventory / "hooks" / "notify.yml")
    hooks = app_hooks({"after_migrate": "hooks/warm.yml",
                       "after_switch": ["hooks/warm.yml", absolute]}, str(inventory))
    assert hooks["after_migrate"] == [str(inventory / "hooks" / "warm.yml")]
    assert hooks["after_switch"] == [str(inventory / "hooks" / "warm.yml"), absolute]
    assert hooks["before_build"] == []


@pytest.mark.parametrize(("hooks", "message"), [
    (["hooks/warm.yml"], "app_hooks must be a mapping of a stage to a task file"),
    ({"after_deploy": "hooks/warm.yml"},
     "app_hooks: unknown stages after_deploy; the stages are before_build, after_build"),
    ({"after_switch": {"file": "x"}}, "app_hooks.after_switch must be a task file or a list"),
    ({"before_build": "hooks/missing.yml"},
     "app_hooks.before_build: hooks/missing.yml is not a file on the controller (looked for "),
])
def test_bad_hooks_are_refused_saying_what_was_found(inventory, hooks, message):
    with pytest.raises(AnsibleFilterError) as error:
        app_hooks(hooks, str(inventory))
    assert message in str(error.value)
