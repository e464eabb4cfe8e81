"""A static guard of the release and app roles' facts (issue 14): what one tasks file tells
another, or one play the next, goes through the one fact ``release_state``.

- Every private name (``__release_*`` in roles/release, ``__app_*`` in roles/app and playbooks/)
  read is set somewhere: by set_fact, register, a ``vars:`` block (of a play, a block, a task or
  an import), loop_var, or the role's vars and defaults. A name left read but never set is a fact
  that a refactor forgot.
- A fact set by set_fact or register is read only in the tasks files that set it: nothing
  crosses files but ``release_state``.
- ``release_state`` is set by the release role alone, by combining onto ``release_state |
  default({})`` (or started anew from the run's id), so that no file loses the keys an earlier
  one set, and never in a ``run_once`` task, whose result would give every host of the play the
  first one's state. The app role's steps add to it through the release role's ``state`` entry
  point (never run_once either).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
# Each role's private names, and whether the playbooks (which import the app role) count.
ROLES = {"release": (re.compile(r"\b__release_[a-z0-9_]+"), False),
         "app": (re.compile(r"\b__app_[a-z0-9_]+"), True)}
STATE = "release_state"
SET_FACT = {"set_fact", "ansible.builtin.set_fact", "ansible.legacy.set_fact"}
BLOCK_KEYS = ("block", "rescue", "always")


class _Loader(yaml.SafeLoader):
    """Ansible's tags (!unsafe, !vault) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                              if isinstance(node, yaml.ScalarNode) else None)


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


IMPORTS = {"import_tasks", "include_tasks",
           "ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}


class Facts:
    """Where each __app_* name is set (and how) and read, per file."""

    def __init__(self, name: re.Pattern) -> None:
        self.name = name
        self.set_by: dict[str, set[str]] = defaultdict(set)     # any way: vars, facts...
        self.fact_in: dict[str, set[str]] = defaultdict(set)    # set_fact or register
        self.read_in: dict[str, set[str]] = defaultdict(set)
        # Task and block vars: in scope in their file, and in the files their tasks import.
        self.scoped: dict[str, set[str]] = defaultdict(set)     # file -> names
        self.state_tasks: list[tuple[str, str, str, bool]] = []  # file, task, value, run_once
        self.state_imports: list[tuple[str, str, bool]] = []  # file, task, run_once

    def read(self, where: str, value: Any) -> None:
        for text in _strings(value):
            for name in self.name.findall(text):
                self.read_in[name].add(where)

    def set(self, where: str, name: str, fact: bool = False) -> None:
        self.set_by[name].add(where)
        if fact:
            self.fact_in[name].add(where)

    def tasks(self, where: str, tasks: Any, run_once: bool = False,
              scope: frozenset = frozenset()) -> None:
        for task in tasks or []:
            if isinstance(task, dict):
                self.task(where, task, run_once, scope)

    def task(self, where: str, task: dict, inherited_run_once: bool, inherited: frozenset) -> None:
        run_once = inherited_run_once or task.get("run_once") in (True, "true", "yes")
        scope = inherited | frozenset(task.get("vars") or {})
        self.scoped[where] |= scope
        if "loop_control" in task:
            loop_var = (task["loop_control"] or {}).get("loop_var")
            if loop_var:
                self.set(where, loop_var)
        if isinstance(task.get("register"), str):
            self.set(where, task["register"], fact=True)
        for module in {"import_role", "ansible.builtin.import_role"} & task.keys():
            if (task[module] or {}).get("tasks_from") == "state":
                self.state_imports.append((where, task.get("name", "?"), run_once))
        for module in IMPORTS & task.keys():
            target = task[module]
            target = target.get("file", "") if isinstance(target, dict) else str(target)
            if "{{" not in target:
                self.scoped[f"tasks/{Path(target).name}"] |= scope
        if any(key in task for key in BLOCK_KEYS):
            for key in BLOCK_KEYS:
                self.tasks(where, task.get(key), run_once, scope)
            self.read(where, {k: v for k, v in task.items() if k not in BLOCK_KEYS + ("vars",)})
            self.read(where, list((task.get("vars") or {}).values()))
            return
        for module in SET_FACT & task.keys():
            for name, value in (task[module] or {}).items():
                if name == "cacheable":
                    continue
                self.set(where, name, fact=True)
                if name == STATE:
                    self.state_tasks.append((where, task.get("name", "?"), str(value), run_once))
        self.read(where, {k: v for k, v in task.items() if k not in ("register", "vars")})
        self.read(where, list((task.get("vars") or {}).values()))

    def unset_reads(self) -> dict[str, list[str]]:
        """Reads of names that nothing sets where they are read (a task's or block's vars are in
        scope in its file and in the files it imports; facts, role and play vars everywhere)."""
        every_scoped = set().union(*self.scoped.values())
        unset = {}
        for name, files in self.read_in.items():
            if self.set_by[name]:
                continue
            missing = [where for where in files
                       if (name not in self.scoped[where] if where.startswith("tasks/")
                           else name not in every_scoped)]
            if missing:
                unset[name] = sorted(missing)
        return unset


@pytest.fixture(scope="module", params=sorted(ROLES))
def facts(request) -> Facts:
    role_name = request.param
    pattern, with_playbooks = ROLES[role_name]
    ROLE = ROOT / "roles" / role_name  # noqa: N806
    found = Facts(pattern)
    found.role = role_name
    for tasks_file in sorted((ROLE / "tasks").glob("*.yml")):
        found.tasks(f"tasks/{tasks_file.name}", _load(tasks_file))
    for kind in ("vars", "defaults"):
        for path in sorted((ROLE / kind).glob("*.yml")):
            data = _load(path) or {}
            for name, value in data.items():
                found.set(f"{kind}/{path.name}", name)
                found.read(f"{kind}/{path.name}", value)
    for template in sorted((ROLE / "templates").rglob("*.j2")):
        for name in pattern.findall(template.read_text(encoding="utf-8")):
            found.read_in[name].add(f"templates/{template.relative_to(ROLE / 'templates')}")
    for playbook in sorted((ROOT / "playbooks").glob("*.yml")) if with_playbooks else []:
        for play in _load(playbook) or []:
            where = f"playbooks/{playbook.name}"
            for name in (play.get("vars") or {}):
                found.set(where, name)
            found.read(where, list((play.get("vars") or {}).values()))
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                found.tasks(where, play.get(key))
    return found


def test_the_guard_sees_the_state(facts: Facts) -> None:
    # (A guard that found nothing would pass whatever the role does.)
    if facts.role == "release":
        assert "tasks/lock.yml" in facts.fact_in[STATE]
        assert "tasks/state.yml" in facts.fact_in[STATE]
        assert len(facts.state_tasks) >= 15
    else:
        assert len(facts.state_imports) >= 6
        assert len(facts.read_in["__app_is_django"]) >= 3


def test_only_the_release_role_sets_the_state(facts: Facts) -> None:
    if facts.role != "release":
        assert facts.state_tasks == [], "the app role adds to release_state with tasks_from: state"


def test_every_app_name_read_is_set(facts: Facts) -> None:
    unset = facts.unset_reads()
    assert unset == {}, f"read but never set where read (set_fact, register, vars): {unset}"


def test_facts_do_not_cross_files_but_the_state(facts: Facts) -> None:
    crossing = {
        name: {"set in": sorted(facts.fact_in[name]),
               "read in": sorted(facts.read_in[name] - facts.fact_in[name])}
        for name in facts.fact_in
        if name != STATE and facts.read_in[name] - facts.fact_in[name]
        # The app_release fact is the hooks' (hook.yml sets it for the users' task files).
        and name != "app_release"
    }
    assert crossing == {}, f"facts read outside the files that set them (use {STATE}): {crossing}"


def test_the_state_keeps_what_earlier_files_set(facts: Facts) -> None:
    losing = [(where, task) for where, task, value, _run_once in facts.state_tasks
              if "release_state | default({}) | combine(" not in value
              and "release_state.run_id" not in value]
    assert losing == [], f"set_fact of {STATE} not combined onto {STATE} | default({{}}): {losing}"


def test_the_state_is_never_set_run_once(facts: Facts) -> None:
    once = [(where, task) for where, task, _value, run_once in facts.state_tasks if run_once]
    once += [(where, task) for where, task, run_once in facts.state_imports if run_once]
    assert once == [], f"run_once set_fact of {STATE} (gives every host the first one's): {once}"
