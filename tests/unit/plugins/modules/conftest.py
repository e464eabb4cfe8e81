"""Run a module's main() in this process, as ansible-playbook would run it on a host."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from ansible.module_utils import _internal
from ansible.module_utils.common import warnings
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys):
    """run_module(module, args, check_mode=False): the module's result, as the JSON it prints.

    Deprecations are returned as ``deprecated``: (message, collection, version) tuples. Each run
    starts without warnings or deprecations (ansible-core keeps them for the whole process,
    which is one module run on a host), and runs as on a host even after other tests imported
    the controller's code (which would send them to the controller's display instead)."""

    def run(module, args: dict, check_mode: bool = False) -> dict:
        capsys.readouterr()
        with patch_module_args({**args, "_ansible_check_mode": check_mode}), \
                mock.patch.object(_internal, "is_controller", False), \
                mock.patch.dict(warnings._global_deprecations, clear=True), \
                mock.patch.dict(warnings._global_warnings, clear=True), \
                pytest.raises(SystemExit):
            module.main()
        result = json.loads(capsys.readouterr().out)
        result["deprecated"] = [deprecation_fields(entry)
                                for entry in result.pop("deprecations", [])]
        return result

    return run


def deprecation_fields(entry: dict) -> tuple:
    """(message, collection, version) of one deprecation in a module's result (ansible-core
    2.19 returns each as an event and its deprecator)."""
    return (entry["event"]["msg"], entry["deprecator"]["resolved_name"], entry["version"])
