# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options and connect helpers shared by the slipway.django database modules.

The argument spec below is documented once, in plugins/doc_fragments/connection.py;
tests/unit/plugins/module_utils/test_database.py keeps the two in step.
"""

from __future__ import annotations

import traceback

try:
    import psycopg2
    import psycopg2.extensions
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None

try:
    import pymysql
except ImportError:
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None

ENGINES = ("postgresql", "mysql")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
APPLICATION_NAME = "slipway.django"


class ConnectionFailure(Exception):
    """The server could not be reached or refused the login."""


def connection_argument_spec() -> dict:
    """Options every slipway.django database module accepts, as an AnsibleModule spec."""
    return dict(
        engine=dict(type="str", required=True, choices=list(ENGINES)),
        login_host=dict(type="str"),
        login_port=dict(type="int"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        login_db=dict(type="str"),
        connect_timeout=dict(type="int", default=30),
    )


def missing_driver(engine: str) -> tuple[str, str] | None:
    """(library name, import traceback) when the driver for engine is not installed."""
    if engine == "postgresql" and not HAS_PSYCOPG2:
        return "psycopg2", PSYCOPG2_IMPORT_ERROR
    if engine == "mysql" and not HAS_PYMYSQL:
        return "PyMySQL", PYMYSQL_IMPORT_ERROR
    return None


def driver_error_types(engine: str) -> tuple:
    """The exception classes a driver raises for server-side and connection errors."""
    if engine == "postgresql":
        return (psycopg2.Error,)
    return (pymysql.err.MySQLError,)


def postgresql_connect_kwargs(params: dict) -> dict:
    """Keyword arguments for psycopg2.connect(); login_unix_socket is the socket directory."""
    kwargs = dict(
        host=params.get("login_unix_socket") or params.get("login_host"),
        port=params.get("login_port") or DEFAULT_PORTS["postgresql"],
        user=params.get("login_user"),
        password=params.get("login_password"),
        dbname=params.get("login_db") or "postgres",
        connect_timeout=params.get("connect_timeout"),
        application_name=APPLICATION_NAME,
    )
    return {key: value for key, value in kwargs.items() if value is not None}


def mysql_connect_kwargs(params: dict) -> dict:
    """Keyword arguments for pymysql.connect(); login_unix_socket is the socket file."""
    kwargs = dict(
        unix_socket=params.get("login_unix_socket"),
        host=params.get("login_host") or "localhost",
        port=params.get("login_port") or DEFAULT_PORTS["mysql"],
        user=params.get("login_user"),
        password=params.get("login_password") or "",
        database=params.get("login_db"),
        connect_timeout=params.get("connect_timeout"),
        charset="utf8mb4",
        autocommit=False,
    )
    return {key: value for key, value in kwargs.items() if value is not None}


def describe_target(params: dict) -> str:
    """Where a connection goes, for error messages (never includes the password)."""
    host = params.get("login_host") or "localhost"
    port = params.get("login_port") or DEFAULT_PORTS[params["engine"]]
    where = params.get("login_unix_socket") or f"{host}:{port}"
    return (f"{params['engine']} database {params.get('login_db')!r} at {where}"
            f" as {params.get('login_user')!r}")


def connect(params: dict):
    """Open a DB-API connection with autocommit off; raise ConnectionFailure on error."""
    engine = params["engine"]
    try:
        if engine == "postgresql":
            connection = psycopg2.connect(**postgresql_connect_kwargs(params))
            connection.set_session(
                isolation_level=psycopg2.extensions.ISOLATION_LEVEL_READ_COMMITTED,
                autocommit=False)
            return connection
        return pymysql.connect(**mysql_connect_kwargs(params))
    except driver_error_types(engine) as error:
        reason = " ".join(str(error).split())
        raise ConnectionFailure(f"Could not connect to {describe_target(params)} ({reason})."
                                f" Check login_host/login_port or"
                                f" login_unix_socket, login_user, login_password and login_db."
                                ) from error
