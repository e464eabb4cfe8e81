"""What the console's routes depend on: the application's objects, who is asking (an API token
or a browser session, with its CSRF check), and the bounded path and query parameters.

No `from __future__ import annotations` here or in the route modules: FastAPI reads the
signatures at run time.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Query, Request
from fastapi import Path as PathParameter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from slipway.console import security
from slipway.console.config import Config
from slipway.console.db import ConsoleDB, User
from slipway.console.runs import RunManager
from slipway.console.scheduler import Scheduler
from slipway.console.service import Console, ConsoleError

SESSION_COOKIE = "slipway_session"
LOGIN_CSRF_COOKIE = "slipway_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Integers a request may carry, bounded so that the stores never see one they cannot hold.
MAX_ID = 2**63 - 1  # SQLite's INTEGER, PostgreSQL's bigint
MAX_LOG_OFFSET = 2**31 - 2  # SUBSTR's position is a 32-bit integer in PostgreSQL
MAX_PAGE = 1_000_000
RunId = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="a run's id")]
ApprovalId = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="an approval request's id")]
TokenId = Annotated[int, PathParameter(ge=1, le=MAX_ID, description="an API token's id")]
LogOffset = Annotated[int, Query(ge=0, le=MAX_LOG_OFFSET,
                                 description="characters of the log already read")]
Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]

bearer = HTTPBearer(auto_error=False, description="an API token")


# The application's objects (made once by create_app, kept in app.state)

def get_config(request: Request) -> Config:
    return request.app.state.config


def get_db(request: Request) -> ConsoleDB:
    return request.app.state.db


def get_runs(request: Request) -> RunManager:
    return request.app.state.runs


def get_console(request: Request) -> Console:
    return request.app.state.console


def get_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


def get_templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates


Settings = Annotated[Config, Depends(get_config)]
Database = Annotated[ConsoleDB, Depends(get_db)]
Runs = Annotated[RunManager, Depends(get_runs)]
Service = Annotated[Console, Depends(get_console)]
Schedules = Annotated[Scheduler, Depends(get_scheduler)]


# Who is asking

@dataclass(frozen=True)
class Identity:
    user: User
    via: str  # "token" or "session"
    csrf: str | None = None
    session_digest: str | None = None


class LoginRequired(Exception):
    """A page asked for without a session: the application redirects to the login page."""


def remote(request: Request) -> str | None:
    return request.client.host if request.client else None


def identify(request: Request, credentials: HTTPAuthorizationCredentials | None
             ) -> Identity | None:
    db = get_db(request)
    if request.headers.get("authorization"):
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ConsoleError(401, "use 'Authorization: Bearer TOKEN'")
        user = db.user_for_token(security.secret_digest(credentials.credentials.strip()))
        if user is None:
            raise ConsoleError(401, "unknown, revoked or expired API token")
        return Identity(user, "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        digest = security.secret_digest(cookie)
        found = db.session(digest)
        if found is not None:
            return Identity(found[0], "session", found[1], digest)
    return None


def api_identity(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None,
                                        Depends(bearer)]) -> Identity:
    identity = identify(request, credentials)
    if identity is None:
        raise ConsoleError(401, "authentication required: an API token "
                           "('Authorization: Bearer TOKEN') or a session")
    if identity.via == "session" and request.method not in SAFE_METHODS \
            and not security.same_secret(request.headers.get(CSRF_HEADER), identity.csrf):
        raise ConsoleError(403, f"missing or wrong {CSRF_HEADER} header for a session "
                           "request")
    return identity


def admin_identity(identity: Annotated[Identity, Depends(api_identity)]) -> Identity:
    if not identity.user.is_admin:
        raise ConsoleError(403, "only admins may do this")
    return identity


def page_identity(request: Request) -> Identity:
    identity = identify(request, None) if not request.headers.get("authorization") else None
    if identity is None or identity.via != "session":
        raise LoginRequired()
    return identity


API = Annotated[Identity, Depends(api_identity)]
ADMIN = Annotated[Identity, Depends(admin_identity)]
PAGE = Annotated[Identity, Depends(page_identity)]


def check_form_csrf(identity: Identity, token: str) -> None:
    if not security.same_secret(token, identity.csrf):
        raise ConsoleError(403, "the form is stale or forged (CSRF token); reload the page")


async def call(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work (the databases, the runs) in a worker thread."""
    return await anyio.to_thread.run_sync(function, *args)
