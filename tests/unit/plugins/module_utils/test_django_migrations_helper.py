"""Planning logic of the migrations helper, on plain data and on real Django operations."""

from __future__ import annotations

import pytest
from ansible_collections.slipway.django.plugins.module_utils import (
    django_migrations_helper as helper,
)

PROD = ("production", "0001_initial")
EQUIP = ("equip", "0001_initial")
EQUIP2 = ("equip", "0002_machine_serial")

PROD_OBJECTS = [("table", "production_production"), ("column", "production_production", "id"),
                ("column", "production_production", "name")]
EQUIP_OBJECTS = [("table", "equip_machine"), ("column", "equip_machine", "id"),
                 ("column", "equip_machine", "line_id")]
EQUIP2_OBJECTS = [("column", "equip_machine", "serial")]


def facts(parents=(), children=(), creates=(), removes=(), operations=("CreateModel",),
          opaque=False):
    return {"parents": list(parents), "children": list(children), "creates": list(creates),
            "removes": list(removes), "operations": list(operations), "opaque": opaque}


def seed_history(applied):
    """The seeds' equip/production graph: equip.0001 depends on production.0001."""
    return helper.History([PROD, EQUIP, EQUIP2], {
        PROD: facts(children=[EQUIP], creates=PROD_OBJECTS),
        EQUIP: facts(parents=[PROD], children=[EQUIP2], creates=EQUIP_OBJECTS),
        EQUIP2: facts(parents=[EQUIP], creates=EQUIP2_OBJECTS, operations=["AddField"]),
    }, applied)


def schema_of(*objects):
    schema = {}
    for obj in objects:
        schema.setdefault(obj[1], set())
        if obj[0] == "column":
            schema[obj[1]].add(obj[2])
    return schema


def steps(report):
    return [(step["action"], step["migration"]) for step in report["steps"]]


@pytest.mark.parametrize(("obj", "expected"), [
    (("table", "shop_order"), True),
    (("table", "SHOP_ORDER"), True),
    (("column", "shop_order", "Note"), True),
    (("column", "shop_order", "paid"), False),
    (("table", "shop_tag"), False),
    (("column", "shop_tag", "id"), False),
])
def test_object_exists_matches_tables_and_columns_case_insensitively(obj, expected):
    assert helper.object_exists(obj, {"shop_order": {"id", "note"}}) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("shop", ("shop", None)),
    ("shop.0002", ("shop", "0002")),
    ("shop.zero", ("shop", "zero")),
    ("shop.0002_order_note", ("shop", "0002_order_note")),
])
def test_parse_target_splits_app_and_migration(text, expected):
    assert helper.parse_target(text) == expected


def test_parse_target_rejects_a_missing_app_label():
    with pytest.raises(helper.HelperError, match="no app label"):
        helper.parse_target(".0001")


def test_dependency_whose_tables_exist_is_fake_applied():
    history = seed_history({EQUIP, EQUIP2})
    report = helper.plan_repair(history, schema_of(*PROD_OBJECTS, *EQUIP_OBJECTS,
                                                   *EQUIP2_OBJECTS))
    assert report["inconsistent"] == [{"migration": "equip.0001_initial",
                                       "missing_dependency": "production.0001_initial"}]
    assert steps(report) == [("fake_apply", "production.0001_initial")]
    assert report["refused"] == []
    assert PROD in history.applied


def test_dependent_without_tables_is_unrecorded_with_its_recorded_descendants():
    history = seed_history({EQUIP, EQUIP2})
    report = helper.plan_repair(history, {})
    assert steps(report) == [("fake_unapply", "equip.0002_machine_serial"),
                             ("fake_unapply", "equip.0001_initial")]
    assert history.applied == set()


def test_dependency_missing_and_dependent_present_is_refused_in_safe_mode():
    history = seed_history({EQUIP})
    report = helper.plan_repair(history, schema_of(*EQUIP_OBJECTS))
    assert steps(report) == []
    refusal = report["refused"][0]
    assert refusal["migration"] == "equip.0001_initial"
    assert "table production_production" in refusal["missing"]
    assert "table equip_machine" in refusal["present"]


def test_force_records_the_missing_dependency_without_evidence():
    history = seed_history({EQUIP})
    report = helper.plan_repair(history, schema_of(*EQUIP_OBJECTS), force=True)
    assert steps(report) == [("fake_apply", "production.0001_initial")]
    assert report["steps"][0]["reason"].startswith("FORCED")
    assert report["warnings"]


def test_dependency_with_runpython_is_fake_applied_when_its_tables_exist_with_a_note():
    history = seed_history({EQUIP})
    history.facts[PROD]["operations"] = ["CreateModel", "RunPython"]
    history.facts[PROD]["opaque"] = True
    report = helper.plan_repair(history, schema_of(*PROD_OBJECTS, *EQUIP_OBJECTS))
    assert steps(report) == [("fake_apply", "production.0001_initial")]
    assert "not verifiable from the schema: RunPython" in report["steps"][0]["evidence"][-1]


def test_dependency_whose_removed_column_is_still_there_is_not_fake_applied():
    history = seed_history({EQUIP})
    history.facts[PROD]["removes"] = [("column", "production_production", "legacy")]
    live = schema_of(*PROD_OBJECTS, *EQUIP_OBJECTS, ("column", "production_production", "legacy"))
    report = helper.plan_repair(history, live)
    assert steps(report) == []
    assert report["refused"][0]["migration"] == "equip.0001_initial"


def test_unrecorded_addfield_migration_whose_column_exists_is_fake_applied():
    history = seed_history({PROD, EQUIP})
    report = helper.plan_repair(history, schema_of(*PROD_OBJECTS, *EQUIP_OBJECTS,
                                                   *EQUIP2_OBJECTS))
    assert steps(report) == [("fake_apply", "equip.0002_machine_serial")]
    assert report["drift"][0]["repair"] == "fake_apply"


def test_partly_present_unrecorded_migration_is_drift_without_repair():
    history = seed_history(set())
    report = helper.plan_repair(history, schema_of(("table", "production_production"),
                                                   ("column", "production_production", "id")))
    assert steps(report) == []
    drift = report["drift"][0]
    assert (drift["migration"], drift["repair"]) == ("production.0001_initial", None)
    assert drift["missing"] == ["column production_production.name"]
    refused = helper.blocked_pending(report["drift"], ["production.0001_initial"])
    assert refused[0]["present"] == ["table production_production",
                                     "column production_production.id"]


def test_recorded_migration_with_nothing_left_is_unrecorded_for_reapplying():
    history = seed_history({PROD, EQUIP, EQUIP2})
    report = helper.plan_repair(history, schema_of(*PROD_OBJECTS))
    assert steps(report) == [("fake_unapply", "equip.0002_machine_serial"),
                             ("fake_unapply", "equip.0001_initial")]


@pytest.mark.parametrize(("reapply", "expected"), [
    (True, [("fake_unapply", "production.0001_initial"), ("apply", "production.0001_initial")]),
    (False, []),
])
def test_recorded_migration_with_a_data_migration_after_it_is_only_reapplied_in_place(
        reapply, expected):
    order = [PROD, ("production", "0002_data")]
    history = helper.History(order, {
        PROD: facts(children=[order[1]], creates=PROD_OBJECTS),
        order[1]: facts(parents=[PROD], operations=["RunPython"], opaque=True),
    }, set(order))
    report = helper.plan_repair(history, {}, reapply=reapply)
    assert steps(report) == expected
    assert report["drift"][0]["repair"] == ("reapply" if reapply else None)
    assert reapply or "RunPython" in report["drift"][0]["reason"]


def test_objects_removed_by_a_later_recorded_migration_are_not_expected():
    later = ("equip", "0003_remove_serial")
    history = helper.History([PROD, EQUIP, EQUIP2, later], {
        PROD: facts(children=[EQUIP], creates=PROD_OBJECTS),
        EQUIP: facts(parents=[PROD], children=[EQUIP2], creates=EQUIP_OBJECTS),
        EQUIP2: facts(parents=[EQUIP], children=[later], creates=EQUIP2_OBJECTS,
                      operations=["AddField"]),
        later: facts(parents=[EQUIP2], removes=EQUIP2_OBJECTS, operations=["RemoveField"]),
    }, {PROD, EQUIP, EQUIP2, later})
    assert history.expected_objects(EQUIP2) == []
    history.applied.discard(later)
    assert history.expected_objects(EQUIP2) == EQUIP2_OBJECTS


@pytest.mark.parametrize(("candidate", "rows", "vendor", "risk"), [
    ({"kind": "not_null_no_default", "table": "t", "column": "c"}, 5, "sqlite", "high"),
    ({"kind": "not_null_no_default", "table": "t", "column": "c"}, 0, "sqlite", None),
    ({"kind": "index", "table": "t"}, 50000, "postgresql", "medium"),
    ({"kind": "index", "table": "t"}, 50000, "mysql", None),
    ({"kind": "index", "table": "t"}, 10, "postgresql", None),
    ({"kind": "remove_column", "table": "t", "column": "c"}, 0, "mysql", "high"),
    ({"kind": "rename_table", "table": "t"}, 3, "postgresql", "high"),
    ({"kind": "alter_type", "table": "t", "column": "c"}, 3, "postgresql", "high"),
    ({"kind": "unique", "table": "t"}, 3, "mysql", "medium"),
    ({"kind": "review", "table": None}, None, "sqlite", "review"),
    ({"kind": "unapply_data", "table": "t", "detail": "drops the table"}, 2, "sqlite", "high"),
])
def test_findings_depend_on_live_row_counts(candidate, rows, vendor, risk):
    candidate = dict(candidate, migration="a.0002", operation="Op: x", operation_name="Op")
    finding = helper.finding_from_candidate(candidate, rows, 0, vendor)
    assert (finding or {}).get("risk") == risk
    if finding and candidate["table"]:
        assert f"table t ({rows} rows)" in finding["reason"]


@pytest.fixture(scope="module")
def django_connection():
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                                  "NAME": ":memory:"}},
                           INSTALLED_APPS=[], USE_TZ=True)
        django.setup()
    from django.db import connection

    return connection


def effects_of(source, connection, state=None):
    from django.db import migrations, models  # noqa: F401 - used by the evaluated source
    from django.db.migrations.state import ProjectState

    operation = eval(source)  # noqa: S307 - test-owned literal operation source
    state = state or ProjectState()
    result = helper.operation_effects(operation, "shop", state, connection)
    operation.state_forwards("shop", state)
    return result, state


def test_create_model_creates_its_table_columns_and_m2m_through_table(django_connection):
    effects = effects_of(
        "migrations.CreateModel('Order', [('id', models.BigAutoField(primary_key=True)), "
        "('customer', models.ForeignKey('shop.customer', models.CASCADE)), "
        "('code', models.CharField(max_length=5, db_column='Code')), "
        "('tags', models.ManyToManyField('shop.tag'))])", django_connection)[0]
    assert effects["creates"] == [("table", "shop_order"), ("column", "shop_order", "id"),
                                  ("column", "shop_order", "customer_id"),
                                  ("column", "shop_order", "Code"),
                                  ("table", "shop_order_tags")]


@pytest.mark.parametrize("options", ["{'proxy': True}", "{'managed': False}"])
def test_models_without_their_own_table_create_nothing(django_connection, options):
    effects = effects_of(
        f"migrations.CreateModel('Order', [('id', models.BigAutoField(primary_key=True))], "
        f"options={options})", django_connection)[0]
    assert effects["creates"] == []


def test_add_rename_and_remove_field_follow_the_state_before_them(django_connection):
    state = effects_of("migrations.CreateModel('Order', [('id', models.AutoField("
                       "primary_key=True))], options={'db_table': 'orders'})",
                       django_connection)[1]
    added, state = effects_of("migrations.AddField('order', 'note', models.TextField())",
                              django_connection, state)
    renamed, state = effects_of("migrations.RenameField('order', 'note', 'comment')",
                                django_connection, state)
    removed = effects_of("migrations.RemoveField('order', 'comment')", django_connection,
                         state)[0]
    assert added["creates"] == [("column", "orders", "note")]
    assert added["lint"][0]["kind"] == "not_null_no_default"
    assert (renamed["removes"], renamed["creates"]) == ([("column", "orders", "note")],
                                                        [("column", "orders", "comment")])
    assert removed["removes"] == [("column", "orders", "comment")]
    assert removed["lint"][0]["kind"] == "remove_column"


@pytest.mark.parametrize(("source", "opaque"), [
    ("migrations.RunPython(migrations.RunPython.noop)", True),
    ("migrations.RunSQL('SELECT 1')", True),
    ("migrations.SeparateDatabaseAndState(state_operations=[])", False),
])
def test_code_and_sql_operations_are_opaque_and_need_review(django_connection, source, opaque):
    effects = effects_of(source, django_connection)[0]
    assert effects["opaque"] is opaque
    assert [c["kind"] for c in effects["lint"]] == (["review"] if opaque else [])


def tool_history():
    """The seed graph plus equip.0003, which creates a table of its own after 0002."""
    tool = ("equip", "0003_tool")
    graph = seed_history(set()).facts
    graph[EQUIP2]["children"] = [tool]
    graph[tool] = facts(parents=[EQUIP2], creates=[("table", "equip_tool")])
    return helper.History([PROD, EQUIP, EQUIP2, tool], graph, {PROD, EQUIP, EQUIP2, tool})


LIVE_WITHOUT_SERIAL = schema_of(*PROD_OBJECTS, *EQUIP_OBJECTS, ("table", "equip_tool"))


def test_missing_column_under_recorded_descendants_is_reapplied_in_place():
    report = helper.plan_repair(tool_history(), LIVE_WITHOUT_SERIAL)
    assert steps(report) == [("fake_unapply", "equip.0002_machine_serial"),
                             ("apply", "equip.0002_machine_serial")]
    assert report["drift"][0]["repair"] == "reapply"


def test_action_repair_never_reapplies_in_place():
    report = helper.plan_repair(tool_history(), LIVE_WITHOUT_SERIAL, reapply=False)
    assert steps(report) == []
    assert report["drift"][0]["repair"] is None


# Lost chains: an app's unrecorded migrations judged against the state after each of them.

def col(null=False, unique=False):
    return {"null": null, "unique": unique}


CHAIN = ["api.0001_initial", "api.0002_customer_email", "api.0003_email_required",
         "api.0004_remove_legacy"]
# The expected schema before the chain and after each of its migrations.
CHAIN_STATES = [
    {},
    {"api_customer": {"id": col(), "legacy": col()}, "api_customer_tags": None},
    {"api_customer": {"id": col(), "legacy": col(), "email": col(null=True)},
     "api_customer_tags": None},
    {"api_customer": {"id": col(), "legacy": col(), "email": col()}, "api_customer_tags": None},
    {"api_customer": {"id": col(), "email": col(unique=True)}, "api_customer_tags": None},
]


def live(tables, unique=()):
    return dict((table, {"columns": dict(columns), "unique": list(unique)})
                for table, columns in tables.items())


FINAL_LIVE = live({"api_customer": {"id": False, "email": False}, "api_customer_tags": {}},
                  unique=[("id",), ("email",)])


def test_chain_universe_holds_every_table_and_column_some_state_has():
    tables, columns = helper.chain_universe(CHAIN_STATES, foreign_tables=["api_customer_tags"])
    assert tables == {"api_customer"}
    assert columns == {("api_customer", "id"), ("api_customer", "legacy"),
                       ("api_customer", "email")}


def test_objects_created_then_removed_are_expected_absent():
    universe = helper.chain_universe(CHAIN_STATES)
    assert helper.compare_state(CHAIN_STATES[4], universe, FINAL_LIVE) == []
    with_legacy = live({"api_customer": {"id": False, "email": False, "legacy": False},
                        "api_customer_tags": {}}, unique=[("email",)])
    assert helper.compare_state(CHAIN_STATES[4], universe, with_legacy) == [
        ("present", ("column", "api_customer", "legacy"))]


def test_compare_state_reads_nullability_uniqueness_and_ignores_unknown_objects():
    universe = helper.chain_universe(CHAIN_STATES)
    stray = live({"api_customer": {"id": False, "email": True, "stray": True},
                  "api_customer_tags": {}, "other_table": {}})
    assert helper.compare_state(CHAIN_STATES[4], universe, stray) == [
        ("nullable", ("column", "api_customer", "email")),
        ("not_unique", ("column", "api_customer", "email"))]
    unreadable = {"api_customer": {"columns": {"id": False, "email": False}, "unique": None},
                  "api_customer_tags": {"columns": {}, "unique": None}}
    assert helper.compare_state(CHAIN_STATES[4], universe, unreadable) == []


def test_judge_chain_matches_the_final_state_of_a_whole_lost_chain():
    verdict = helper.judge_chain(CHAIN, CHAIN_STATES, FINAL_LIVE)
    assert (verdict["match"], verdict["best"], verdict["mismatches"]) == (4, 4, [])


def test_judge_chain_matches_the_latest_state_the_schema_reached():
    at_two = live({"api_customer": {"id": False, "legacy": False, "email": True},
                   "api_customer_tags": {}})
    assert helper.judge_chain(CHAIN, CHAIN_STATES, at_two)["match"] == 2
    nothing = live({})
    assert helper.judge_chain(CHAIN, CHAIN_STATES, nothing)["match"] == 0


def test_judge_chain_names_the_missing_column_and_the_migration_that_creates_it():
    no_email = live({"api_customer": {"id": False}, "api_customer_tags": {}})
    verdict = helper.judge_chain(CHAIN, CHAIN_STATES, no_email)
    assert verdict["match"] is None
    assert verdict["best"] == 4
    assert verdict["mismatches"] == [{
        "problem": "missing", "object": "column api_customer.email",
        "migration": "api.0002_customer_email",
        "text": "column api_customer.email is missing (api.0002_customer_email creates it)"}]


@pytest.mark.parametrize(("n", "problem", "obj", "expected"), [
    (4, "nullable", ("column", "api_customer", "email"),
     ("api.0003_email_required", "{} makes it NOT NULL")),
    (4, "not_unique", ("column", "api_customer", "email"),
     ("api.0004_remove_legacy", "{} makes it unique")),
    (4, "present", ("column", "api_customer", "legacy"),
     ("api.0004_remove_legacy", "{} removes it")),
    (1, "present", ("column", "api_customer", "email"),
     ("api.0002_customer_email", "only the later, unapplied {} creates it")),
    (3, "missing", ("table", "api_customer"), ("api.0001_initial", "{} creates it")),
])
def test_responsible_names_the_migration_whose_effect_the_schema_lacks(n, problem, obj,
                                                                       expected):
    assert helper.responsible(CHAIN_STATES, CHAIN, n, problem, obj) == expected


def lost_api_history(applied=()):
    """api.0001 creates legacy, api.0002 removes it; billing.0001 depends on api.0001."""
    api1, api2, billing = ("api", "0001_initial"), ("api", "0002_remove_legacy"), \
        ("billing", "0001_initial")
    return helper.History([api1, api2, billing], {
        api1: facts(children=[api2, billing], creates=[
            ("table", "api_customer"), ("column", "api_customer", "legacy")]),
        api2: facts(parents=[api1], removes=[("column", "api_customer", "legacy")],
                    operations=["RemoveField", "RunPython"], opaque=True),
        billing: facts(parents=[api1], creates=[("table", "billing_invoice")]),
    }, applied)


def judge_returning(match, mismatches=()):
    calls = []

    def judge(chain):
        calls.append([helper.label(key) for key in chain])
        labels = [helper.label(key) for key in chain]
        return {"labels": labels, "match": match, "best": match or len(chain),
                "mismatches": list(mismatches)}

    judge.calls = calls
    return judge


def test_plan_repair_records_a_lost_chain_the_judge_matches_and_reports_assumed_steps():
    history = lost_api_history()
    history.facts[("api", "0002_remove_legacy")]["assumed"] = ["RunPython: Raw Python operation"]
    judge = judge_returning(2)
    report = helper.plan_repair(history, {"api_customer": {"id"}}, judge=judge)
    assert judge.calls == [["api.0001_initial", "api.0002_remove_legacy"]]
    assert steps(report) == [("fake_apply", "api.0001_initial"),
                             ("fake_apply", "api.0002_remove_legacy")]
    assert report["drift"][0]["repair"] == "fake_apply"
    assert report["assumed"] == [{"migration": "api.0002_remove_legacy",
                                  "operation": "RunPython: Raw Python operation",
                                  "reason": "assumed applied, cannot be checked"}]
    assert "column api_customer.legacy is gone" in report["steps"][1]["evidence"]


def test_plan_repair_without_a_judge_keeps_the_one_by_one_verdict():
    report = helper.plan_repair(lost_api_history(), {"api_customer": {"id"}})
    assert steps(report) == []
    assert report["drift"][0]["repair"] is None
    assert helper.blocked_pending(report["drift"], ["api.0001_initial"])[0]["missing"] == [
        "column api_customer.legacy"]


def test_a_contradicted_lost_chain_is_refused_naming_object_and_migration():
    mismatch = {"problem": "missing", "object": "table api_customer",
                "migration": "api.0001_initial",
                "text": "table api_customer is missing (api.0001_initial creates it)"}
    history = lost_api_history(applied=[("billing", "0001_initial")])
    schema = {"billing_invoice": set(), "api_customer_x": set()}
    report = helper.plan_repair(history, schema, judge=judge_returning(None, [mismatch]))
    assert steps(report) == []
    refusal = report["refused"][0]
    assert refusal["migration"] == "api.0001_initial"
    assert refusal["missing"] == ["table api_customer"]
    assert "table api_customer is missing (api.0001_initial creates it)" in refusal["reason"]
    assert report["chain_refused"] == {"api": []}


def test_blocked_pending_uses_the_chain_refusal_once_per_app():
    drift = [{"migration": "api.0001_initial", "recorded": False, "repair": None,
              "present": ["table api_customer"], "missing": [], "reason": "x"},
             {"migration": "api.0003_tags", "recorded": False, "repair": None,
              "present": ["table api_tag"], "missing": [], "reason": "x"}]
    chain = {"api": [{"migration": "api.0002_email", "reason": "r", "present": [],
                      "missing": ["column api_customer.email"]}]}
    refused = helper.blocked_pending(drift, ["api.0001_initial", "api.0003_tags"], chain)
    assert [entry["migration"] for entry in refused] == ["api.0002_email"]
