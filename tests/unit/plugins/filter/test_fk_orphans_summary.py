"""The orphans' lines (as a seed script's --stats/--verify printed them) and their record."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.slipway.django.plugins.filter.fk_orphans_summary import (
    fk_orphans_lines,
    fk_orphans_record,
)

FOUND = {"table": "ai_outputs", "column": "task_id", "references_table": "tasks",
         "references_column": "id", "action": "report", "table_rows": 200, "orphans": 5,
         "sample": [3, 17, 42], "deleted": 0, "nullified": 0, "archived": 0,
         "archive_table": None}
CLEAN = {"table": "notes", "column": "user_id", "references_table": "users",
         "references_column": "id", "action": "report", "table_rows": 10, "orphans": 0,
         "sample": [], "deleted": 0, "nullified": 0, "archived": 0, "archive_table": None}


def test_a_report_names_each_relation_its_orphans_and_a_few_keys():
    assert fk_orphans_lines([FOUND, CLEAN]) == [
        "ai_outputs.task_id -> tasks.id: 5 orphans of 200 rows (first: 3, 17, 42)",
        "notes.user_id -> users.id: 0 orphans of 10 rows",
    ]


def test_a_cleaning_says_what_it_did():
    archived = {**FOUND, "action": "archive", "archived": 5,
                "archive_table": "ai_outputs_orphans"}
    assert fk_orphans_lines([archived]) == [
        "ai_outputs.task_id -> tasks.id: 5 orphans of 200 rows (first: 3, 17, 42); "
        "archived 5 into ai_outputs_orphans"]


def test_the_record_keeps_the_counts_and_what_was_left():
    deleted = {**FOUND, "action": "delete", "deleted": 5}
    after = [{**FOUND, "table_rows": 195, "orphans": 0, "sample": []}]
    assert fk_orphans_record([deleted], after) == [
        {"relation": "ai_outputs.task_id -> tasks.id", "orphans": 5, "rows": 200, "deleted": 5,
         "left": 0}]
    assert fk_orphans_record([CLEAN]) == [
        {"relation": "notes.user_id -> users.id", "orphans": 0, "rows": 10}]


def test_something_else_than_the_modules_result_is_refused():
    with pytest.raises(AnsibleFilterError, match="not a relation of the module's result"):
        fk_orphans_lines([{"table": "x"}])
