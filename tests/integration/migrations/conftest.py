"""Fixtures for the slipway.django.migrations tests: a Django virtualenv and generated apps."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from django_project import App, django_version, make_django_venv, write_project  # noqa: E402

# `make django-matrix` names the app's virtualenv (one per Django version) here.
APP_VENV = os.environ.get("SLIPWAY_TEST_APP_VENV")


def pytest_report_header(config):
    if APP_VENV:
        return f"app virtualenv: {APP_VENV} (Django {django_version(Path(APP_VENV))})"
    return None


@pytest.fixture(scope="session")
def django_venv(tmp_path_factory) -> Path:
    """One virtualenv with Django for the whole session, distinct from the module's python:
    SLIPWAY_TEST_APP_VENV, else one that sees the controller's Django."""
    if APP_VENV:
        return Path(APP_VENV)
    return make_django_venv(tmp_path_factory.mktemp("django-venv") / "venv")


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def vendor(request) -> str:
    return request.param


@pytest.fixture
def make_app(request, tmp_path, django_venv, vendor):
    """Build a project from a spec on a fresh database of the ``vendor`` under test."""

    def build(spec: dict) -> App:
        if vendor == "sqlite":
            url = f"sqlite:///{tmp_path}/db.sqlite3"
        elif vendor == "postgresql":
            url = request.getfixturevalue("pg_server").url(request.getfixturevalue("pg_database"))
        else:
            url = request.getfixturevalue("mysql_server").url(
                request.getfixturevalue("mysql_database"))
        project = write_project(tmp_path / "project", spec)
        return App(project=project, venv=django_venv, url=url, vendor=vendor)

    return build
