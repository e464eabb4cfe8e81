"""slipway.django.migrations repairs broken history only where the live schema proves it."""

from __future__ import annotations

import pytest
from django_project import Migration, add_field, create_model

FK_LINE = ("('line', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, "
           "to='production.production'))")

# The seeds' MES case: equip.0001_initial depends on production.0001_initial.
SEED = {
    "production": [Migration("0001_initial", [
        create_model("Production", "('name', models.CharField(max_length=50))")])],
    "equip": [
        Migration("0001_initial", [
            create_model("Machine", "('code', models.CharField(max_length=20))", FK_LINE)],
            [("production", "0001_initial")]),
        Migration("0002_machine_serial", [
            add_field("machine", "serial", "models.CharField(default='', max_length=40)")],
            [("equip", "0001_initial")]),
    ],
}

SHOP = {
    "shop": [
        Migration("0001_initial", [create_model("Order", "('number', models.IntegerField())")]),
        Migration("0002_order_note", [
            add_field("order", "note", "models.TextField(default='')"),
            add_field("order", "paid", "models.BooleanField(default=False)")],
            [("shop", "0001_initial")]),
        Migration("0003_order_tags", [
            create_model("Tag", "('label', models.CharField(max_length=20))"),
            add_field("order", "tags", "models.ManyToManyField(to='shop.tag')")],
            [("shop", "0002_order_note")]),
    ],
}


def migrated_seed(make_app):
    """The seed project fully migrated, with one production line and one machine on it."""
    app = make_app(SEED)
    assert app.manage("migrate").returncode == 0
    app.sql("INSERT INTO production_production (id, name) VALUES (1, 'line A')")
    app.sql("INSERT INTO equip_machine (id, code, line_id, serial) VALUES (7, 'M-7', 1, 'S')")
    return app


def actions(result: dict) -> list[tuple[str, str]]:
    return [(step["action"], step["migration"]) for step in result["plan"]]


def test_lost_dependency_row_is_fake_applied_when_its_tables_exist(make_app):
    app = migrated_seed(make_app)
    app.unrecord("production.0001_initial")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert result["inconsistent"] == [{"migration": "equip.0001_initial",
                                       "missing_dependency": "production.0001_initial"}]
    assert actions(result) == [("fake_apply", "production.0001_initial")]
    assert "table production_production exists" in result["plan"][0]["evidence"]
    assert "production.0001_initial" in app.recorded()
    assert app.sql("SELECT code, line_id FROM equip_machine") == [("M-7", 1)]
    assert app.manage("migrate", "--check").returncode == 0


def test_dependent_recorded_without_tables_is_unrecorded_then_both_applied_in_order(make_app):
    app = make_app(SEED)
    app.record("equip.0001_initial")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [
        ("fake_unapply", "equip.0001_initial"),
        ("apply", "production.0001_initial"),
        ("apply", "equip.0001_initial"),
        ("apply", "equip.0002_machine_serial"),
    ]
    assert result["applied"] == ["production.0001_initial", "equip.0001_initial",
                                 "equip.0002_machine_serial"]
    assert {"production_production", "equip_machine"} <= app.tables()
    assert app.manage("migrate", "--check").returncode == 0


@pytest.mark.parametrize("vendor", ["postgresql"], indirect=True)
def test_dependency_missing_while_dependent_tables_exist_is_refused_and_nothing_changes(
        make_app):
    app = migrated_seed(make_app)
    app.sql("DROP TABLE production_production CASCADE")
    app.unrecord("production.0001_initial")
    before = app.recorded()

    result = app.run_module()

    assert result["failed"]
    assert "Safe repair refused" in result["msg"]
    refusal = result["refused"][0]
    assert refusal["migration"] == "equip.0001_initial"
    assert "table production_production" in refusal["missing"]
    assert "table equip_machine" in refusal["present"]
    assert app.recorded() == before
    assert app.sql("SELECT code FROM equip_machine") == [("M-7",)]


@pytest.mark.parametrize("vendor", ["postgresql"], indirect=True)
def test_force_records_missing_dependency_without_evidence_and_warns(make_app):
    app = migrated_seed(make_app)
    app.sql("DROP TABLE production_production CASCADE")
    app.unrecord("production.0001_initial")

    result = app.run_module(action="repair", repair="force")

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("fake_apply", "production.0001_initial")]
    assert "FORCED" in result["plan"][0]["reason"]
    assert any("WITHOUT evidence" in warning for warning in result["warnings"])
    assert "production.0001_initial" in app.recorded()


def test_unrecorded_addfield_and_m2m_migrations_whose_objects_exist_are_fake_applied(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate").returncode == 0
    app.sql("INSERT INTO shop_order (id, number, note, paid) VALUES (1, 42, 'keep me', 1)"
            if app.vendor != "postgresql" else
            "INSERT INTO shop_order (id, number, note, paid) VALUES (1, 42, 'keep me', true)")
    app.unrecord("shop.0002_order_note")
    app.unrecord("shop.0003_order_tags")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("fake_apply", "shop.0002_order_note"),
                               ("fake_apply", "shop.0003_order_tags")]
    assert "table shop_order_tags exists" in result["plan"][1]["evidence"]
    assert {"shop.0002_order_note", "shop.0003_order_tags"} <= app.recorded()
    assert app.sql("SELECT number, note FROM shop_order") == [(42, "keep me")]
    assert app.manage("migrate", "--check").returncode == 0


@pytest.mark.parametrize("vendor", ["mysql"], indirect=True)
def test_partly_present_migration_is_refused_with_present_and_missing_objects(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate", "shop", "0001").returncode == 0
    app.sql("ALTER TABLE shop_order ADD COLUMN note longtext NOT NULL")
    before = app.recorded()

    result = app.run_module()

    assert result["failed"]
    refusal = result["refused"][0]
    assert refusal["migration"] == "shop.0002_order_note"
    assert refusal["present"] == ["column shop_order.note"]
    assert refusal["missing"] == ["column shop_order.paid"]
    assert app.recorded() == before
    assert "paid" not in app.columns("shop_order")


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"], indirect=True)
def test_recorded_migration_whose_tables_vanished_is_unrecorded_and_reapplied(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate").returncode == 0
    app.sql("DROP TABLE shop_order_tags")
    app.sql("DROP TABLE shop_tag")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert result["drift"][0]["migration"] == "shop.0003_order_tags"
    assert result["drift"][0]["repair"] == "fake_unapply"
    assert actions(result) == [("fake_unapply", "shop.0003_order_tags"),
                               ("apply", "shop.0003_order_tags")]
    assert {"shop_tag", "shop_order_tags"} <= app.tables()


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_recorded_migration_with_some_objects_missing_is_reported_not_touched(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate").returncode == 0
    app.sql("DROP TABLE shop_order_tags")
    before = app.recorded()

    result = app.run_module(action="diagnose")

    assert not result.get("failed"), result["msg"]
    drift = result["drift"][0]
    assert drift["recorded"] and drift["repair"] is None
    assert drift["missing"] == ["table shop_order_tags"]
    assert "table shop_tag" in drift["present"]
    assert app.recorded() == before


@pytest.mark.parametrize("vendor", ["postgresql"], indirect=True)
def test_check_mode_reports_the_plan_and_diff_and_changes_nothing(make_app):
    app = make_app(SEED)
    app.record("equip.0001_initial")
    before = app.recorded()

    result = app.run_module(check=True, diff=True)

    assert not result.get("failed"), result["msg"]
    assert result["changed"]
    assert actions(result)[0] == ("fake_unapply", "equip.0001_initial")
    assert result["diff"]["after"] == ("equip.0002_machine_serial\nproduction.0001_initial\n")
    assert result["applied"] == []
    assert app.recorded() == before
    assert "production_production" not in app.tables()


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_diagnose_reports_inconsistency_without_changing_anything(make_app):
    app = migrated_seed(make_app)
    app.unrecord("production.0001_initial")

    result = app.run_module(action="diagnose")

    assert not result.get("failed"), result["msg"]
    assert not result["changed"]
    assert actions(result) == [("fake_apply", "production.0001_initial")]
    assert "production.0001_initial" not in app.recorded()


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_targets_migrate_an_app_backwards(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate").returncode == 0

    result = app.run_module(targets=["shop.0001"])

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("unapply", "shop.0003_order_tags"),
                               ("unapply", "shop.0002_order_note")]
    assert app.recorded() == {"shop.0001_initial"}
    assert "note" not in app.columns("shop_order")
    assert "shop_tag" not in app.tables()


@pytest.mark.parametrize("vendor", ["mysql", "postgresql"], indirect=True)
def test_dropped_columns_of_a_recorded_migration_are_recreated_in_place_keeping_data(make_app):
    app = make_app(SHOP)
    assert app.manage("migrate").returncode == 0
    app.sql("INSERT INTO shop_order (id, number, note, paid) VALUES (1, 42, 'n', false)")
    app.sql("ALTER TABLE shop_order DROP COLUMN note")
    app.sql("ALTER TABLE shop_order DROP COLUMN paid")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert result["drift"][0]["repair"] == "reapply"
    assert actions(result) == [("fake_unapply", "shop.0002_order_note"),
                               ("apply", "shop.0002_order_note")]
    assert {"note", "paid"} <= app.columns("shop_order")
    assert app.sql("SELECT id, number FROM shop_order") == [(1, 42)]
    assert app.recorded() == {"shop.0001_initial", "shop.0002_order_note",
                              "shop.0003_order_tags"}
    assert app.manage("migrate", "--check").returncode == 0


@pytest.mark.parametrize("vendor", ["postgresql"], indirect=True)
def test_lost_history_table_is_rebuilt_from_the_schema_without_touching_data(make_app):
    app = migrated_seed(make_app)
    app.sql("DROP TABLE django_migrations")

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("fake_apply", "production.0001_initial"),
                               ("fake_apply", "equip.0001_initial"),
                               ("fake_apply", "equip.0002_machine_serial")]
    assert app.recorded() == {"production.0001_initial", "equip.0001_initial",
                              "equip.0002_machine_serial"}
    assert app.sql("SELECT code, serial FROM equip_machine") == [("M-7", "S")]


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_action_repair_fixes_the_history_and_applies_nothing(make_app):
    app = make_app(SEED)
    app.record("equip.0001_initial")

    result = app.run_module(action="repair")

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("fake_unapply", "equip.0001_initial")]
    assert result["applied"] == []
    assert app.recorded() == set()
    assert not {"production_production", "equip_machine"} & app.tables()
