"""Bad input fails with a clear message and no change; concurrent runs do not interleave."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import threading
import time

import pytest
from django_project import REPO, Migration, create_model, django_version

sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

from django_migrations_helper import LOCK_KEY, LOCK_NAME  # noqa: E402

SHOP = {"shop": [Migration("0001_initial", [
    create_model("Order", "('number', models.IntegerField())")])]}


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("change", "expected"), [
    ("no_manage_py", "holds no manage.py"),
    ("missing_virtualenv", "/nonexistent/venv does not exist"),
    ("virtualenv_without_django", "Django cannot be imported"),
    ("broken_settings", "failed to load"),
    ("unreachable_database", "Cannot connect to database 'default'"),
])
def test_bad_input_fails_with_a_clear_message_and_changes_nothing(make_app, tmp_path, change,
                                                                  expected):
    app = make_app(SHOP)
    args = {}
    if change == "no_manage_py":
        args["project_path"] = str(tmp_path)
    elif change == "missing_virtualenv":
        args["virtualenv"] = "/nonexistent/venv"
    elif change == "virtualenv_without_django":
        bare = tmp_path / "bare-venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        args["virtualenv"] = str(bare)
    elif change == "broken_settings":
        (app.project / "config" / "broken.py").write_text("import no_such_module\n")
        args["settings"] = "config.broken"
    else:
        app.url = "postgresql://nobody:secret@127.0.0.1:9/nowhere"

    result = app.run_module(**args)

    assert result["failed"]
    assert expected in result["msg"]
    assert not result["changed"]
    assert not (app.project.parent / "db.sqlite3").exists() or change == "unreachable_database"


@pytest.mark.parametrize("vendor", ["sqlite"], indirect=True)
def test_the_helper_runs_under_the_apps_django(make_app, django_venv):
    """The module reports the Django of the app's virtualenv (make django-matrix's choice), not
    one of its own: the host's python has none."""
    app = make_app(SHOP)

    result = app.run_module(action="diagnose")

    assert not result.get("failed"), result.get("msg")
    assert result["django_version"] == django_version(django_venv)
    assert [step["migration"] for step in result["plan"]] == ["shop.0001_initial"]


def hold_lock(app):
    """Something holding the module's lock on the app's database; closing it releases it."""
    from urllib.parse import urlparse

    parts = urlparse(app.url)
    if app.vendor == "sqlite":
        app.sql("SELECT 1")  # creates the database file
        handle = open(parts.path, "rb")  # noqa: SIM115 - closed by the caller
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle
    connection = app._connect()
    if app.vendor == "postgresql":
        connection.autocommit = True
        connection.cursor().execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    else:
        name = f"{LOCK_NAME}:{parts.path.lstrip('/')}"[:64]
        connection.cursor().execute("SELECT GET_LOCK(%s, 10)", (name,))
    return connection


@pytest.mark.parametrize("vendor", ["postgresql", "mysql", "sqlite"], indirect=True)
def test_a_run_waits_for_the_lock_held_by_another_run(make_app):
    app = make_app(SHOP)
    holder = hold_lock(app)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(app.run_module()))
    runner.start()
    try:
        time.sleep(6)  # long enough for an unlocked run to finish; the lock must stop it
        assert runner.is_alive()
        assert "django_migrations" not in app.tables()
    finally:
        holder.close()
    runner.join(timeout=120)

    assert not outcome.get("failed"), outcome.get("msg")
    assert outcome["applied"] == ["shop.0001_initial"]
    assert app.recorded() == {"shop.0001_initial"}
