"""Per-test seed databases on both engines for the fk_orphans tests."""

from __future__ import annotations

import pytest
from fk_orphans_helpers import Database, load_seed


@pytest.fixture(params=["postgresql", "mysql"])
def target(request):
    """(server, database name, Database) of an empty database on each engine."""
    server = request.getfixturevalue("pg_server" if request.param == "postgresql"
                                     else "mysql_server")
    name = request.getfixturevalue("pg_database" if request.param == "postgresql"
                                   else "mysql_database")
    db = Database(server, name)
    yield server, name, db
    db.close()


@pytest.fixture
def seeded(target):
    """target, loaded with seed 001's tables and their orphans."""
    load_seed(target[2])
    return target
