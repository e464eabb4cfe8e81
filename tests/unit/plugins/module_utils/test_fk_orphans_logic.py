"""Pure helpers of the fk_orphans logic: names, type checks, batching and the fraction guard."""

from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.module_utils.fk_orphans import (
    ForeignKey,
    MysqlDialect,
    Relation,
    RelationPlan,
    bounded_name,
    chunks,
    default_constraint_name,
    discover_relations,
    fraction_violations,
    mysql_quote,
    types_compatible,
)


def plan(table: str, rows: int, orphans: int, action: str = "delete") -> RelationPlan:
    return RelationPlan(Relation(table, "task_id", "tasks"), action, rows, orphans, [], [])


@pytest.mark.parametrize(("plans", "max_fraction", "refused"), [
    ([plan("ai_outputs", 1000, 100)], 0.1, []),
    ([plan("ai_outputs", 1000, 101)], 0.1, ["ai_outputs"]),
    ([plan("ai_outputs", 1000, 60), plan("ai_outputs", 1000, 60)], 0.1, ["ai_outputs"]),
    ([plan("ai_outputs", 1000, 60), plan("issues", 1000, 60)], 0.1, []),
    ([plan("ai_outputs", 1000, 900, action="report")], 0.1, []),
    ([plan("ai_outputs", 1000, 900, action="nullify")], 0.95, []),
    ([plan("ai_outputs", 1000, 1)], 0.0, ["ai_outputs"]),
    ([plan("ai_outputs", 0, 0)], 0.0, []),
])
def test_fraction_guard_sums_changed_rows_per_table(plans, max_fraction, refused):
    messages = fraction_violations(plans, max_fraction)
    assert [message.split(":")[0] for message in messages] == refused


@pytest.mark.parametrize(("child", "parent", "compatible"), [
    ("bigint", "bigint", True),
    ("integer", "bigint", True),
    ("int4", "int8", True),
    ("int", "bigint", True),
    ("varchar", "char", True),
    ("uuid", "uuid", True),
    ("text", "bigint", False),
    ("longtext", "bigint", False),
    ("uuid", "varchar", False),
    ("numeric", "integer", False),
])
def test_types_compatible_allows_only_comparable_families(child, parent, compatible):
    assert types_compatible(child, parent) is compatible


@pytest.mark.parametrize(("name", "limit", "expected_length"), [
    ("ai_outputs_task_id_fk_tasks_id", 63, 30),
    ("x" * 63, 63, 63),
    ("x" * 64, 63, 63),
    ("x" * 200, 64, 64),
])
def test_bounded_name_fits_the_engine_limit(name, limit, expected_length):
    assert len(bounded_name(name, limit)) == expected_length


def test_bounded_name_keeps_long_names_distinct():
    assert bounded_name("a" * 70 + "one", 63) != bounded_name("a" * 70 + "two", 63)


def test_default_constraint_name_names_both_ends():
    relation = Relation("ai_outputs", "task_id", "tasks")
    assert default_constraint_name(relation, 63) == "ai_outputs_task_id_fk_tasks_id"


@pytest.mark.parametrize(("name", "quoted"), [
    ("tasks", "`tasks`"),
    ("weird`name", "`weird``name`"),
    ("x`; DROP TABLE tasks; --", "`x``; DROP TABLE tasks; --`"),
])
def test_mysql_quote_escapes_backticks(name, quoted):
    assert mysql_quote(name) == quoted


def test_mysql_orphan_query_ignores_nulls_and_quotes_every_identifier():
    relation = Relation("ai`outputs", "task`id", "ta`sks", "i`d")
    assert MysqlDialect._orphans_from(relation) == (
        "FROM `ai``outputs` c LEFT JOIN `ta``sks` p ON p.`i``d` = c.`task``id`"
        " WHERE c.`task``id` IS NOT NULL AND p.`i``d` IS NULL")


@pytest.mark.parametrize(("size", "expected"), [
    (2, [[1, 2], [3, 4], [5]]),
    (5, [[1, 2, 3, 4, 5]]),
    (10, [[1, 2, 3, 4, 5]]),
])
def test_chunks_cover_every_key_once_in_order(size, expected):
    assert list(chunks([1, 2, 3, 4, 5], size)) == expected


def test_discover_keeps_single_column_keys_and_explains_the_rest():
    declared = [
        ForeignKey("logs_fk", "task_logs", ["task_id"], "tasks", ["id"]),
        ForeignKey("orders_fk", "orders", ["shop_id", "shop_code"], "shops", ["id", "code"]),
        ForeignKey("remote_fk", "notes", ["user_id"], None, ["id"]),
    ]
    relations, skipped = discover_relations(declared)
    assert [(r.table, r.column, r.references_table) for r in relations] == [
        ("task_logs", "task_id", "tasks")]
    assert "composite" in skipped[0] and "another schema" in skipped[1]
