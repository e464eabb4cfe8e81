"""Every result a role registers is one of its own facts (a name starting with two underscores):
the provision role's fingerprint of what a role is given (slipway.django.role_fingerprint) leaves
those out, so a result another app's deploy registered earlier in the same run (two apps' plays in
one playbook) cannot make a provisioning role look changed on its second run."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"


def registers(node):
    """Every `register:` value in a tasks file's tasks, blocks, rescues and always."""
    if isinstance(node, list):
        for item in node:
            yield from registers(item)
    elif isinstance(node, dict):
        if "register" in node:
            yield node["register"]
        for key in ("block", "rescue", "always"):
            yield from registers(node.get(key) or [])


def test_every_registered_result_is_a_roles_own_fact():
    found = {}
    for tasks_file in sorted(ROLES.glob("*/tasks/*.yml")):
        for name in registers(yaml.safe_load(tasks_file.read_text()) or []):
            found.setdefault(name, str(tasks_file.relative_to(ROLES)))
    assert found, "no register found: the walk is wrong"
    public = {name: where for name, where in found.items() if not name.startswith("__")}
    assert public == {}
