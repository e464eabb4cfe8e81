"""slipway.django.migrations checks pending migrations for operations dangerous on a live DB."""

from __future__ import annotations

import pytest
from django_project import Migration, add_field, create_model

API_INITIAL = Migration("0001_initial", [
    create_model("Order", "('number', models.IntegerField())",
                 "('note', models.CharField(max_length=20, null=True))"),
    create_model("Customer", "('name', models.CharField(max_length=20))",
                 "('email', models.CharField(max_length=50, null=True))"),
])

NOT_NULL = {"api": [API_INITIAL, Migration("0002_order_phone", [
    add_field("order", "phone", "models.CharField(max_length=20)")], [("api", "0001_initial")])]}

RISKY = {"api": [API_INITIAL, Migration("0002_risky", [
    "migrations.RemoveField(model_name='customer', name='name')",
    "migrations.RenameField(model_name='order', old_name='note', new_name='comment')",
    "migrations.AlterField(model_name='order', name='number', "
    "field=models.CharField(max_length=10))",
    "migrations.AlterField(model_name='customer', name='email', "
    "field=models.CharField(max_length=50, default='x'))",
    "migrations.AddIndex(model_name='order', index=models.Index(fields=['number'], "
    "name='order_number_idx'))",
    "migrations.AddConstraint(model_name='customer', constraint=models.UniqueConstraint("
    "fields=['email'], name='customer_email_uniq'))",
    "migrations.RunPython(migrations.RunPython.noop)",
    "migrations.RunSQL('SELECT 1')",
], [("api", "0001_initial")])]}


def test_not_null_column_without_default_on_table_with_rows_fails_before_any_change(make_app):
    app = make_app(NOT_NULL)
    assert app.manage("migrate", "api", "0001").returncode == 0
    app.sql("INSERT INTO api_order (id, number) VALUES (1, 10), (2, 20)")

    result = app.run_module(unsafe_operations="fail")

    assert result["failed"]
    finding = result["unsafe"][0]
    assert finding["migration"] == "api.0002_order_phone"
    assert finding["risk"] == "high"
    assert (finding["table"], finding["rows"]) == ("api_order", 2)
    assert "api_order (2 rows)" in result["msg"]
    assert app.recorded() == {"api.0001_initial"}
    assert "phone" not in app.columns("api_order")


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_not_null_column_on_empty_table_is_not_a_finding(make_app):
    app = make_app(NOT_NULL)
    assert app.manage("migrate", "api", "0001").returncode == 0

    result = app.run_module(unsafe_operations="fail")

    assert not result.get("failed"), result["msg"]
    assert result["unsafe"] == []
    assert result["applied"] == ["api.0002_order_phone"]


@pytest.mark.parametrize("vendor", ["postgresql"], indirect=True)
def test_each_kind_of_risky_operation_is_reported_with_its_table_and_rows(make_app):
    app = make_app(RISKY)
    assert app.manage("migrate", "api", "0001").returncode == 0
    app.sql("INSERT INTO api_order (number) SELECT n FROM generate_series(1, 12000) AS n")
    app.sql("INSERT INTO api_customer (name, email) VALUES ('a', NULL), ('b', 'b@x')")

    result = app.run_module(action="diagnose")

    assert not result.get("failed"), result["msg"]
    found = {(item["operation"].split(":")[0], item["table"], item["rows"], item["risk"])
             for item in result["unsafe"]}
    assert found == {
        ("RemoveField", "api_customer", 2, "high"),
        ("RenameField", "api_order", 12000, "high"),
        ("AlterField", "api_order", 12000, "high"),        # IntegerField -> CharField
        ("AlterField", "api_customer", 2, "high"),         # NOT NULL with one NULL row
        ("AddIndex", "api_order", 12000, "medium"),
        ("AddConstraint", "api_customer", 2, "medium"),
        ("RunPython", None, None, "review"),
        ("RunSQL", None, None, "review"),
    }
    not_null = next(item for item in result["unsafe"] if "email" in item["reason"]
                    and "NOT NULL" in item["reason"])
    assert "1 of them NULL" in not_null["reason"]
    assert app.recorded() == {"api.0001_initial"}


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_code_in_migrations_is_not_a_finding_on_an_empty_database(make_app):
    """A first deploy: RunPython and RunSQL (Django's own contenttypes and auth migrations have
    some) run on a database without a table, whose data they cannot harm."""
    app = make_app(RISKY)

    result = app.run_module(action="diagnose")

    assert not result.get("failed"), result["msg"]
    assert result["pending"] == ["api.0001_initial", "api.0002_risky"]
    assert result["unsafe"] == []
