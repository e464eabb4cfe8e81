"""Fixtures shared by the integration tests: real database servers, one per session."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dbservers import (  # noqa: E402
    DatabaseServer,
    mariadb_server,
    mysql_scratch_database,
    postgresql_server,
)


@pytest.fixture(scope="session")
def pg_server() -> DatabaseServer:
    with postgresql_server() as server:
        yield server


@pytest.fixture(scope="session")
def mysql_server() -> DatabaseServer:
    with mariadb_server() as server:
        yield server


@pytest.fixture
def pg_database(pg_server: DatabaseServer) -> str:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=pg_server.host, port=pg_server.port, user=pg_server.user,
                             password=pg_server.password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def mysql_database(mysql_server: DatabaseServer) -> str:
    """A fresh, empty MariaDB database for one test; dropped afterwards."""
    with mysql_scratch_database(mysql_server) as (_admin, name):
        yield name
