"""slipway.django.fk_orphans run through ansible-playbook against real PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest
from fk_orphans_helpers import (
    AI_OUTPUT_ORPHANS,
    ISSUE_NULLS,
    ISSUE_ORPHANS,
    SEED_RELATIONS,
    TASK_LOG_ORPHANS,
    by_table,
    run_module,
)


def test_report_counts_orphans_ignores_nulls_and_changes_nothing(seeded):
    server, name, db = seeded
    result = run_module(server, name, socket=True, relations=SEED_RELATIONS)
    assert not result.get("failed"), result.get("msg")
    relations = by_table(result)
    assert relations["ai_outputs"]["orphans"] == len(AI_OUTPUT_ORPHANS)
    assert relations["ai_outputs"]["sample"] == AI_OUTPUT_ORPHANS
    assert relations["issues"]["orphans"] == len(ISSUE_ORPHANS)
    assert relations["task_logs"]["orphans"] == len(TASK_LOG_ORPHANS)
    assert result["total_orphans"] == 10
    assert result["changed"] is False
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 65
    assert db.scalar("SELECT count(*) FROM issues") == 47


def test_delete_removes_only_orphans_and_a_second_run_changes_nothing(seeded):
    server, name, db = seeded
    result = run_module(server, name, action="delete", relations=SEED_RELATIONS, batch_size=2)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert by_table(result)["ai_outputs"]["deleted"] == len(AI_OUTPUT_ORPHANS)
    assert db.ids("ai_outputs") == [i for i in range(1, 66) if i not in AI_OUTPUT_ORPHANS]
    assert db.ids("issues") == [i for i in range(1, 48) if i not in ISSUE_ORPHANS]
    assert db.ids("issues", "task_id IS NULL") == ISSUE_NULLS
    assert db.ids("task_logs") == [i for i in range(1, 33) if i not in TASK_LOG_ORPHANS]
    again = run_module(server, name, action="delete", relations=SEED_RELATIONS)
    assert again["changed"] is False
    assert again["total_orphans"] == 0


def test_nullify_sets_orphan_references_to_null_and_keeps_the_rows(seeded):
    server, name, db = seeded
    relation = {"table": "issues", "column": "task_id", "references_table": "tasks"}
    result = run_module(server, name, action="nullify", relations=[relation])
    assert not result.get("failed"), result.get("msg")
    assert by_table(result)["issues"]["nullified"] == len(ISSUE_ORPHANS)
    assert db.scalar("SELECT count(*) FROM issues") == 47
    assert db.ids("issues", "task_id IS NULL") == sorted(ISSUE_NULLS + ISSUE_ORPHANS)


def test_nullify_of_a_not_null_column_fails_and_changes_nothing(seeded):
    server, name, db = seeded
    result = run_module(server, name, action="nullify", relations=SEED_RELATIONS)
    assert result["failed"]
    assert "NOT NULL" in result["msg"] and "ai_outputs" in result["msg"]
    assert db.ids("issues", "task_id IS NULL") == ISSUE_NULLS


def test_archive_moves_every_orphan_and_nothing_else(seeded):
    server, name, db = seeded
    relation = {"table": "ai_outputs", "column": "task_id", "references_table": "tasks"}
    result = run_module(server, name, action="archive", relations=[relation], batch_size=2)
    assert not result.get("failed"), result.get("msg")
    entry = by_table(result)["ai_outputs"]
    assert (entry["archived"], entry["archive_table"]) == (5, "ai_outputs_orphans")
    assert db.ids("ai_outputs_orphans") == AI_OUTPUT_ORPHANS
    assert db.column("SELECT content FROM ai_outputs_orphans ORDER BY id") == [
        f"output {i}" for i in AI_OUTPUT_ORPHANS]
    assert db.scalar("SELECT count(*) FROM ai_outputs_orphans WHERE archived_at IS NULL") == 0
    assert db.ids("ai_outputs") == [i for i in range(1, 66) if i not in AI_OUTPUT_ORPHANS]


def test_check_mode_reports_what_would_be_done_and_changes_nothing(seeded):
    server, name, db = seeded
    relations = [dict(rel, constraint_name=f"{rel['table']}_fk") for rel in SEED_RELATIONS[:2]]
    result = run_module(server, name, check=True, diff=True, action="archive",
                        add_constraint=True, relations=relations)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    entry = by_table(result)["ai_outputs"]
    assert (entry["archived"], entry["constraint_added"]) == (5, True)
    assert result["diff"]["after"]["ai_outputs.task_id -> tasks.id"]["orphans"] == 0
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 65
    assert db.scalar("SELECT count(*) FROM information_schema.tables"
                     " WHERE table_name = 'ai_outputs_orphans'") == 0
    assert db.scalar("SELECT count(*) FROM information_schema.table_constraints"
                     " WHERE constraint_name = 'ai_outputs_fk'") == 0


def test_fraction_guard_refuses_before_any_relation_changes(seeded):
    server, name, db = seeded
    result = run_module(server, name, action="delete", relations=SEED_RELATIONS,
                        max_fraction=0.07)
    assert result["failed"]
    assert "ai_outputs" in result["msg"] and "max_fraction" in result["msg"]
    assert db.scalar("SELECT count(*) FROM issues") == 47
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 65


def test_raising_max_fraction_lets_a_large_cleanup_through(seeded):
    server, name, db = seeded
    db.run("DELETE FROM ai_outputs WHERE id < 40 AND id NOT IN (13, 26, 39)")
    relation = {"table": "ai_outputs", "column": "task_id", "references_table": "tasks"}
    refused = run_module(server, name, action="delete", relations=[relation])
    assert refused["failed"]
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 29
    result = run_module(server, name, action="delete", relations=[relation], max_fraction=0.2)
    assert not result.get("failed"), result.get("msg")
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 24


def test_discover_cleans_orphans_loaded_behind_a_declared_key(seeded):
    server, name, db = seeded
    result = run_module(server, name, discover=True, action="delete")
    assert not result.get("failed"), result.get("msg")
    assert [entry["table"] for entry in result["relations"]] == ["task_logs"]
    assert result["relations"][0]["deleted"] == len(TASK_LOG_ORPHANS)
    assert result["relations"][0]["constraint_name"] == "task_logs_task_id_fk"
    assert db.ids("task_logs") == [i for i in range(1, 33) if i not in TASK_LOG_ORPHANS]
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 65


def test_discover_skips_composite_keys_with_a_reason(target):
    server, name, db = target
    db.run("CREATE TABLE shops (id int, code int, PRIMARY KEY (id, code))",
           "CREATE TABLE orders (id int PRIMARY KEY, shop_id int, shop_code int,"
           " CONSTRAINT orders_shop_fk FOREIGN KEY (shop_id, shop_code)"
           " REFERENCES shops (id, code))")
    result = run_module(server, name, discover=True)
    assert not result.get("failed"), result.get("msg")
    assert result["relations"] == []
    assert "composite" in result["skipped_foreign_keys"][0]


def test_add_constraint_cleans_then_adds_a_key_that_rejects_new_orphans(seeded):
    server, name, db = seeded
    relation = {"table": "ai_outputs", "column": "task_id", "references_table": "tasks",
                "on_delete": "cascade"}
    result = run_module(server, name, action="delete", add_constraint=True,
                        relations=[relation])
    assert not result.get("failed"), result.get("msg")
    entry = by_table(result)["ai_outputs"]
    assert (entry["deleted"], entry["constraint_added"]) == (5, True)
    assert entry["constraint_name"] == "ai_outputs_task_id_fk_tasks_id"
    with pytest.raises(Exception, match="(?i)foreign key"):
        db.run("INSERT INTO ai_outputs (id, task_id) VALUES (500, 999)")
    db.run("DELETE FROM task_logs WHERE task_id = 1", "DELETE FROM tasks WHERE id = 1")
    assert db.scalar("SELECT count(*) FROM ai_outputs WHERE task_id = 1") == 0
    again = run_module(server, name, action="delete", add_constraint=True, relations=[relation])
    assert again["changed"] is False


@pytest.mark.parametrize(("relation", "complaint"), [
    ({"table": "ai_output", "column": "task_id", "references_table": "tasks"},
     "no table 'ai_output'"),
    ({"table": "ai_outputs", "column": "task", "references_table": "tasks"},
     "has no column 'task'"),
    ({"table": "ai_outputs", "column": "content", "references_table": "tasks"},
     "column types differ"),
    ({"table": "no_pk", "column": "task_id", "references_table": "tasks"},
     "has no primary key"),
])
def test_bad_input_fails_with_a_clear_error_and_no_change(seeded, relation, complaint):
    server, name, db = seeded
    db.run("CREATE TABLE no_pk (task_id bigint)", "INSERT INTO no_pk VALUES (4242)")
    relations = [SEED_RELATIONS[0], relation]
    result = run_module(server, name, action="delete", relations=relations)
    assert result["failed"]
    assert complaint in result["msg"]
    assert "Nothing was changed" in result["msg"]
    assert db.scalar("SELECT count(*) FROM ai_outputs") == 65


def test_archive_of_two_relations_on_one_table_shares_its_archive_incl_a_self_reference(seeded):
    server, name, db = seeded
    db.run("ALTER TABLE issues ADD COLUMN duplicate_of bigint NULL",
           "UPDATE issues SET duplicate_of = 999 WHERE id = 2",
           "UPDATE issues SET duplicate_of = 3 WHERE id = 4")
    relations = [SEED_RELATIONS[1], {"table": "issues", "column": "duplicate_of",
                                     "references_table": "issues"}]
    result = run_module(server, name, action="archive", relations=relations)
    assert not result.get("failed"), result.get("msg")
    assert [entry["archived"] for entry in result["relations"]] == [len(ISSUE_ORPHANS), 1]
    assert db.ids("issues_orphans") == sorted([2, *ISSUE_ORPHANS])
    assert db.scalar("SELECT duplicate_of FROM issues WHERE id = 4") == 3
