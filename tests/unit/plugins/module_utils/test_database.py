"""The shared connection argument spec and its doc fragment describe the same options."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.slipway.django.plugins.doc_fragments.connection import (
    ModuleDocFragment,
)
from ansible_collections.slipway.django.plugins.module_utils.database import (
    connection_argument_spec,
    describe_target,
    mysql_connect_kwargs,
    postgresql_connect_kwargs,
)

SPEC = connection_argument_spec()
DOCUMENTED = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]


def test_doc_fragment_documents_exactly_the_spec_options():
    assert sorted(DOCUMENTED) == sorted(SPEC)


@pytest.mark.parametrize("option", sorted(SPEC))
@pytest.mark.parametrize("key", ["type", "required", "default", "choices"])
def test_doc_fragment_matches_the_spec(option, key):
    assert DOCUMENTED[option].get(key) == SPEC[option].get(key)


def test_only_the_password_is_hidden_from_logs():
    assert [name for name, spec in SPEC.items() if spec.get("no_log")] == ["login_password"]


@pytest.mark.parametrize(("params", "expected"), [
    ({"login_host": "db", "login_port": None, "login_unix_socket": None},
     {"host": "db", "port": 5432}),
    ({"login_host": "db", "login_port": 6432, "login_unix_socket": "/run/postgresql"},
     {"host": "/run/postgresql", "port": 6432}),
    ({"login_host": None, "login_port": None, "login_unix_socket": None},
     {"port": 5432}),
])
def test_postgresql_uses_the_socket_directory_as_host(params, expected):
    kwargs = postgresql_connect_kwargs({"login_db": "app", "connect_timeout": 5, **params})
    assert {key: kwargs.get(key) for key in expected} == expected
    assert ("host" in kwargs) == ("host" in expected)


@pytest.mark.parametrize(("params", "expected"), [
    ({"login_host": None, "login_port": None, "login_unix_socket": None},
     {"host": "localhost", "port": 3306, "unix_socket": None}),
    ({"login_host": "db", "login_port": 3307, "login_unix_socket": "/run/mysqld/mysqld.sock"},
     {"host": "db", "port": 3307, "unix_socket": "/run/mysqld/mysqld.sock"}),
])
def test_mysql_passes_the_socket_file_and_defaults_to_localhost(params, expected):
    kwargs = mysql_connect_kwargs({"login_db": "app", **params})
    assert {key: kwargs.get(key) for key in expected} == expected
    assert kwargs["autocommit"] is False


def test_error_target_never_shows_the_password():
    text = describe_target({"engine": "mysql", "login_host": "db", "login_user": "app",
                            "login_password": "s3cret", "login_db": "shop"})
    assert "s3cret" not in text
    assert "db:3306" in text
