"""A real app's whole history lost ("table already exists" on every migration of the app).

The ``api`` app adds, alters and removes fields over twelve migrations: a field created by
0001 is removed by 0009, a table created by 0003 is deleted by 0010, 0007 is a RunPython that
bumps a counter (so running it again would change the data) and 0008 makes a column NOT NULL.
``billing`` depends on api.0001, as the other apps of a real project do; when it keeps its rows
while api's are lost, the history is also inconsistent.
"""

from __future__ import annotations

import pytest
from django_project import Migration, add_field, create_model

CUSTOMER_FK = ("('customer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, "
               "to='api.customer'))")
BUMP = """
def bump(apps, schema_editor):
    Order = apps.get_model("api", "Order")
    Order.objects.update(counter=models.F("counter") + 1)
"""


def alter_field(model: str, name: str, field: str) -> str:
    return f"migrations.AlterField(model_name={model!r}, name={name!r}, field={field})"


def depends(name: str) -> list[tuple[str, str]]:
    return [("api", name)]


API = [
    Migration("0001_initial", [
        create_model("Customer", "('name', models.CharField(max_length=100))",
                     "('legacy_code', models.CharField(default='', max_length=20))"),
        create_model("Order", CUSTOMER_FK, "('total', models.IntegerField(default=0))")]),
    Migration("0002_customer_email", [
        add_field("customer", "email", "models.CharField(max_length=200, null=True)")],
        depends("0001_initial")),
    Migration("0003_note", [create_model("Note", "('text', models.TextField())")],
              depends("0002_customer_email")),
    Migration("0004_customer_email_length", [
        alter_field("customer", "email", "models.CharField(max_length=254, null=True)")],
        depends("0003_note")),
    Migration("0005_order_status", [
        add_field("order", "status", "models.CharField(default='new', max_length=10)")],
        depends("0004_customer_email_length")),
    Migration("0006_order_counter", [
        add_field("order", "counter", "models.IntegerField(default=0)")],
        depends("0005_order_status")),
    Migration("0007_bump_counters", ["migrations.RunPython(bump, migrations.RunPython.noop)"],
              depends("0006_order_counter"), code=BUMP),
    Migration("0008_customer_email_required", [
        alter_field("customer", "email", "models.CharField(default='', max_length=254)")],
        depends("0007_bump_counters")),
    Migration("0009_remove_customer_legacy_code", [
        "migrations.RemoveField(model_name='customer', name='legacy_code')"],
        depends("0008_customer_email_required")),
    Migration("0010_delete_note", ["migrations.DeleteModel(name='Note')"],
              depends("0009_remove_customer_legacy_code")),
    Migration("0011_order_ref", [
        add_field("order", "ref", "models.CharField(max_length=32, null=True, unique=True)")],
        depends("0010_delete_note")),
    Migration("0012_order_tags", [
        create_model("Tag", "('label', models.CharField(max_length=20))"),
        add_field("order", "tags", "models.ManyToManyField(to='api.tag')")],
        depends("0011_order_ref")),
]
API_LABELS = [f"api.{migration.name}" for migration in API]
BILLING = [Migration("0001_initial", [
    create_model("Invoice", CUSTOMER_FK, "('amount', models.IntegerField())")],
    [("api", "0001_initial")])]


def project(with_dependent: bool) -> dict:
    return {"api": API, "billing": BILLING} if with_dependent else {"api": API}


def lose_api_history(app) -> None:
    app.sql("DELETE FROM django_migrations WHERE app = 'api'")
    assert app.sql("SELECT COUNT(*) FROM django_migrations WHERE app = 'api'") == [(0,)]


def api_rows(app) -> int:
    return app.sql("SELECT COUNT(*) FROM django_migrations WHERE app = 'api'")[0][0]


def actions(result: dict) -> list[tuple[str, str]]:
    return [(step["action"], step["migration"]) for step in result["plan"]]


def migrated(make_app, with_dependent: bool):
    """The project fully migrated, with a customer, an order bumped to counter 3."""
    app = make_app(project(with_dependent))
    proc = app.manage("migrate")
    assert proc.returncode == 0, proc.stderr
    app.sql("INSERT INTO api_customer (id, name, email) VALUES (1, 'Ada', 'ada@example.org')")
    app.sql("INSERT INTO api_order (id, customer_id, total, status, counter, ref) "
            "VALUES (1, 1, 5, 'paid', 3, 'R-1')")
    if with_dependent:
        app.sql("INSERT INTO billing_invoice (id, customer_id, amount) VALUES (1, 1, 5)")
    return app


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("with_dependent", [True, False], ids=["dependent-app", "alone"])
def test_whole_lost_history_of_an_app_is_faked_when_the_schema_is_its_final_state(
        make_app, with_dependent):
    app = migrated(make_app, with_dependent)
    lose_api_history(app)
    failure = app.manage("migrate").stderr
    assert ("InconsistentMigrationHistory" if with_dependent else "already exists") in failure

    preview = app.run_module(check=True, diff=True)
    assert not preview.get("failed"), preview["msg"]
    assert preview["changed"]
    assert api_rows(app) == 0

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert actions(result) == [("fake_apply", name) for name in API_LABELS]
    assert result["applied"] == []
    assert result["refused"] == []
    assert [(item["migration"], item["operation"].split(":")[0]) for item in
            result["assumed"]] == [("api.0007_bump_counters", "RunPython")]
    assert "assumed applied, cannot be checked" in result["assumed"][0]["reason"]
    assert api_rows(app) == len(API)
    assert "column api_customer.legacy_code is gone" in result["plan"][8]["evidence"]
    migrate = app.manage("migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert "No migrations to apply" in migrate.stdout
    assert app.sql("SELECT total, status, counter, ref FROM api_order") == [(5, "paid", 3, "R-1")]
    assert app.sql("SELECT name, email FROM api_customer") == [("Ada", "ada@example.org")]
    if with_dependent:
        assert app.sql("SELECT amount FROM billing_invoice") == [(5,)]

    again = app.run_module()
    assert not again.get("failed"), again["msg"]
    assert not again["changed"]
    assert again["plan"] == []


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("with_dependent", [True, False], ids=["dependent-app", "alone"])
def test_lost_history_is_faked_up_to_the_state_the_schema_matches_and_the_rest_applied(
        make_app, with_dependent):
    app = make_app(project(with_dependent))
    proc = app.manage("migrate", "api", "0008")
    assert proc.returncode == 0, proc.stderr
    if with_dependent:
        assert app.manage("migrate", "billing").returncode == 0
    assert "legacy_code" in app.columns("api_customer")
    app.sql("INSERT INTO api_customer (id, name, legacy_code, email) "
            "VALUES (1, 'Ada', 'L1', 'ada@example.org')")
    app.sql("INSERT INTO api_order (id, customer_id, total, status, counter) "
            "VALUES (1, 1, 5, 'paid', 3)")
    lose_api_history(app)

    result = app.run_module()

    assert not result.get("failed"), result["msg"]
    assert actions(result) == ([("fake_apply", name) for name in API_LABELS[:8]]
                               + [("apply", name) for name in API_LABELS[8:]])
    assert [item["migration"] for item in result["assumed"]] == ["api.0007_bump_counters"]
    assert result["applied"] == API_LABELS[8:]
    assert api_rows(app) == len(API)
    assert "legacy_code" not in app.columns("api_customer")
    assert "api_note" not in app.tables()
    assert {"api_tag", "api_order_tags"} <= app.tables()
    assert app.sql("SELECT total, status, counter FROM api_order") == [(5, "paid", 3)]
    assert app.manage("migrate", "--check").returncode == 0


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"], indirect=True)
@pytest.mark.parametrize("with_dependent", [True, False], ids=["dependent-app", "alone"])
def test_lost_history_whose_schema_lacks_a_column_of_the_final_state_is_refused(
        make_app, with_dependent):
    app = migrated(make_app, with_dependent)
    app.sql("ALTER TABLE api_order DROP COLUMN status")
    lose_api_history(app)
    before = app.recorded()

    result = app.run_module()

    assert result["failed"]
    assert "Safe repair refused" in result["msg"]
    assert "column api_order.status is missing (api.0005_order_status creates it)" \
        in result["msg"]
    assert [item["migration"] for item in result["refused"]] == ["api.0005_order_status"]
    assert result["refused"][0]["missing"] == ["column api_order.status"]
    assert app.recorded() == before
    assert app.sql("SELECT total, counter FROM api_order") == [(5, 3)]
