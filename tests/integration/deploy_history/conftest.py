"""One empty history store per test, on each engine: SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest
from deploy_history_helpers import Project


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "data" / "history.sqlite3")
    if request.param == "postgresql":
        return request.getfixturevalue("pg_server").url(request.getfixturevalue("pg_database"))
    return request.getfixturevalue("mysql_server").url(request.getfixturevalue("mysql_database"))


@pytest.fixture
def project(tmp_path, store_url) -> Project:
    return Project(tmp_path / "project", store_url)
