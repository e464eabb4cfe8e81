"""An app database on each engine for the db_backup tests, and a backup directory."""

from __future__ import annotations

import pytest
from db_backup_helpers import create_app_database, drop_app_database


@pytest.fixture(params=["postgresql", "mysql"])
def app_db(request):
    """A seeded database owned by its own unprivileged login user, on each engine."""
    server = request.getfixturevalue("pg_server" if request.param == "postgresql"
                                     else "mysql_server")
    db = create_app_database(server)
    yield db
    drop_app_database(db)


@pytest.fixture
def mysql_app_db(mysql_server):
    db = create_app_database(mysql_server)
    yield db
    drop_app_database(db)


@pytest.fixture
def dest_dir(tmp_path):
    """Where backups go; not created, as on a fresh host."""
    return tmp_path / "backups" / "app"
