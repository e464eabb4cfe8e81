"""slipway.django.migrations returns the database to the state recorded with an earlier release."""

from __future__ import annotations

from django_project import Migration, add_field, create_model

V1 = {
    "production": [Migration("0001_initial", [
        create_model("Production", "('name', models.CharField(max_length=50))")])],
    "equip": [Migration("0001_initial", [
        create_model("Machine", "('code', models.CharField(max_length=20))")])],
}


def v2(reverse_code: bool = True) -> dict:
    """V1 plus a nullable field, a new model (a new app too) and a data migration."""
    fill = ("migrations.RunPython(lambda apps, schema_editor: None"
            + (", reverse_code=migrations.RunPython.noop)" if reverse_code else ")"))
    return {
        "production": V1["production"] + [
            Migration("0002_production_note", [
                add_field("production", "note", "models.TextField(null=True)")],
                [("production", "0001_initial")]),
            Migration("0003_fill_note", [fill], [("production", "0002_production_note")]),
        ],
        "equip": V1["equip"],
        "shifts": [Migration("0001_initial", [
            create_model("Shift", "('starts', models.IntegerField())")],
            [("production", "0002_production_note")])],
    }


def release(make_app, spec: dict):
    """Deploy ``spec`` on a fresh database; the app and the state the module records."""
    app = make_app(spec)
    result = app.run_module()
    assert not result.get("failed"), result["msg"]
    return app, result["state"]


def test_rollback_unapplies_what_the_later_release_added_and_keeps_the_data(make_app, tmp_path):
    app, state_v1 = release(make_app, V1)
    assert state_v1 == ["equip.0001_initial", "production.0001_initial"]
    app.sql("INSERT INTO production_production (id, name) VALUES (1, 'line A')")

    later = make_app(v2())
    result = later.run_module()
    assert not result.get("failed"), result["msg"]
    assert "shifts.0001_initial" in result["state"]
    assert "note" in later.columns("production_production")

    preview = later.run_module(action="diagnose", target_state=state_v1)
    unapply = [step["migration"] for step in preview["plan"] if step["action"] == "unapply"]
    assert sorted(unapply) == ["production.0002_production_note", "production.0003_fill_note",
                               "shifts.0001_initial"]
    assert unapply[-1] == "production.0002_production_note", "dependents are unapplied first"
    assert preview["irreversible"] == []
    assert later.recorded() >= {"shifts.0001_initial"}, "diagnose must change nothing"

    result = later.run_module(target_state=state_v1)

    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    assert sorted(result["unapplied"]) == sorted([
        "production.0003_fill_note", "shifts.0001_initial", "production.0002_production_note"])
    assert result["state"] == state_v1
    assert later.recorded() == set(state_v1)
    assert "shifts_shift" not in later.tables()
    assert "note" not in later.columns("production_production")
    assert later.sql("SELECT name FROM production_production") == [("line A",)]

    again = later.run_module(target_state=state_v1)
    assert again["changed"] is False and again["unapplied"] == []


def test_rollback_refuses_an_irreversible_migration_and_changes_nothing(make_app):
    app, state_v1 = release(make_app, V1)
    later = make_app(v2(reverse_code=False))
    assert not later.run_module().get("failed")
    before = later.recorded()

    result = later.run_module(target_state=state_v1)

    assert result.get("failed") is True
    assert result["irreversible"] == [{"migration": "production.0003_fill_note",
                                       "operations": ["RunPython: Raw Python operation"]}]
    assert "cannot be reversed" in result["msg"] and "production.0003_fill_note" in result["msg"]
    assert later.recorded() == before
    assert "note" in later.columns("production_production")


def test_check_mode_reports_the_rollback_without_doing_it(make_app):
    app, state_v1 = release(make_app, V1)
    later = make_app(v2())
    assert not later.run_module().get("failed")

    result = later.run_module(check=True, target_state=state_v1)

    assert result["changed"] is True
    assert result["state"] == state_v1
    assert "shifts_shift" in later.tables()


def test_targets_and_target_state_are_exclusive(make_app):
    app = make_app(V1)
    result = app.run_module(targets=["equip"], target_state=[])
    assert result.get("failed") is True
    assert "mutually exclusive" in result["msg"]
