"""The web application: the JSON API under /api/v1, the live log as server-sent events, and
server-rendered pages for people.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time,
and they name dependencies defined inside create_app().
"""

import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slipway.console import security
from slipway.console.config import Config
from slipway.console.db import ConsoleDB, User
from slipway.console.runs import RunManager
from slipway.console.service import Console, ConsoleError
from slipway.history import store as history_store
from slipway.history.cli import format_duration

SESSION_COOKIE = "slipway_session"
LOGIN_CSRF_COOKIE = "slipway_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEARTBEAT_SECONDS = 15.0
TEMPLATES = Path(__file__).parent / "templates"
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


@dataclass(frozen=True)
class Identity:
    user: User
    via: str  # "token" or "session"
    csrf: str | None = None
    session_digest: str | None = None


class LoginRequired(Exception):
    pass


class BodySizeLimit:
    """Refuses a request body larger than ``max_bytes`` with 413 before the application, and so
    any authentication, has seen it: at once when Content-Length says so, else as soon as a
    streamed body grows past the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdecimal() and int(length) > self.max_bytes:
            await JSONResponse({"detail": self._message()}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI reads a body before it solves dependencies: this ends it there.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted_receive, send)


# Request bodies

class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str = Field(description="An environment of the console's configuration")
    branch: str | None = Field(None, description="Branch, tag or commit to deploy (default: the "
                               "environment's default_branch)")
    skip_build: StrictBool = Field(False, description="Skip the playbook's `build` tag")
    skip_migrations: StrictBool = Field(False, description="Skip the playbook's `migrate` tag")
    description: str | None = Field(None, description="Why; shown in the history")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str
    release: str | None = Field(None, description="Release id to go back to")
    deploy_id: int | None = Field(None, ge=1, le=MAX_ID,
                                  description="Or: a successful run whose release to go back "
                                  "to. Neither: the previous good release")
    restore_db: StrictBool = Field(False, description="Also restore the database backup taken "
                                   "before that release's migrations")
    description: str | None = None


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str
    command: str = Field(description="The name of a command on the environment's allow-list "
                         "(`commands:` of the console's configuration); never a command line")
    dry_run: StrictBool = Field(False, description="Run it with --dry-run (only for entries "
                                "with dry_run: true)")
    description: str | None = None


class NewUserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    role: str
    environments: list[str] = Field(default_factory=list)
    password: str = Field(repr=False)


class NewTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expires: str | None = Field(None, description="How long it lasts: 12h, 30d, 2w... (at most "
                                "3650d). None: until revoked")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(repr=False)
    new_password: str = Field(repr=False, description="At least "
                              f"{security.MIN_PASSWORD_LENGTH} characters")


# JSON shapes

def _time(value: Any) -> Any:
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


def _elapsed(run: dict[str, Any]) -> int | None:
    if run.get("duration") is not None:
        return run["duration"]
    if run.get("status") == "running" and run.get("started_at"):
        return int((history_store.utcnow() - run["started_at"]).total_seconds())
    return None


RUN_FIELDS = ("id", "run_uuid", "environment", "status", "branch", "release_id", "commit_hash",
              "deployed_by", "description", "error_message", "playbook", "skip_tags",
              "app", "controller", "kind", "command", "command_rc")


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    data = {name: run.get(name) for name in RUN_FIELDS}
    data.update(started_at=_time(run.get("started_at")),
                completed_at=_time(run.get("completed_at")), duration=_elapsed(run))
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return _time(value)


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def create_app(config: Config) -> FastAPI:
    db = ConsoleDB(config.console_db)
    db.create()
    runs = RunManager(config, db)
    console = Console(config, db, runs)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["duration"] = format_duration
    templates.env.filters["when"] = lambda value: (value.strftime("%Y-%m-%d %H:%M:%S")
                                                   if isinstance(value, datetime) else "-")
    templates.env.globals["elapsed"] = _elapsed
    templates.env.globals["min_password_length"] = security.MIN_PASSWORD_LENGTH

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interrupted = await anyio.to_thread.run_sync(runs.recover,
                                                     console.release_after_interrupt)
        app.state.interrupted_at_start = interrupted
        yield
        await anyio.to_thread.run_sync(runs.stop_all, "the console stopped")

    app = FastAPI(
        title="slipway deploy console",
        version="1",
        description="Trigger, watch, cancel and roll back deploys of slipway.django. "
                    "Authenticate with `Authorization: Bearer TOKEN` (`slipway-console token "
                    "NAME`) or a browser session (unsafe methods then need the "
                    f"`{CSRF_HEADER}` header).",
        docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.console = console
    bearer = HTTPBearer(auto_error=False, description="an API token")

    # Errors and headers

    @app.exception_handler(ConsoleError)
    async def console_error(request: Request, exc: ConsoleError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status,
                            headers=headers)

    @app.exception_handler(history_store.HistoryStoreError)
    async def store_error(request: Request, exc: history_store.HistoryStoreError
                          ) -> JSONResponse:
        return JSONResponse({"detail": f"the deploy history store is unavailable: {exc}"},
                            status_code=503)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Any:
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        problems = "; ".join(f"{' '.join(str(part) for part in error['loc'])}: {error['msg']}"
                             for error in exc.errors())
        return render(request, "error.html", None, status_code=422,
                      error=f"Malformed request: {problems}")

    # Inside security_headers, so that a refusal gets the same headers as any answer.
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable) -> Any:
        request.state.nonce = secrets.token_urlsafe(16)
        response = await call_next(request)
        nonce = request.state.nonce
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Who is asking

    def remote(request: Request) -> str | None:
        return request.client.host if request.client else None

    def identify(request: Request, credentials: HTTPAuthorizationCredentials | None
                 ) -> Identity | None:
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
        return await anyio.to_thread.run_sync(function, *args)

    # API

    @app.post("/api/v1/deploy/trigger", status_code=201, tags=["deploy"],
              responses={202: {"description": "held until a second admin approves"},
                         409: {"description": "the environment has a run going"}})
    async def trigger(body: TriggerRequest, identity: API, request: Request) -> JSONResponse:
        """Start a deploy (returns its id), or hold it for approval."""
        result = await call(console.trigger, identity.user, body.environment, body.branch,
                            body.skip_build, body.skip_migrations, body.description,
                            remote(request))
        return JSONResponse(result, status_code=202 if result["id"] is None else 201)

    @app.post("/api/v1/deploy/rollback", status_code=201, tags=["deploy"],
              responses={202: {"description": "held until a second admin approves"}})
    async def rollback(body: RollbackRequest, identity: API, request: Request) -> JSONResponse:
        """Roll an environment back to a release, a run's release, or the previous good one."""
        result = await call(console.rollback, identity.user, body.environment, body.release,
                            body.deploy_id, body.restore_db, body.description, remote(request))
        return JSONResponse(result, status_code=202 if result["id"] is None else 201)

    @app.post("/api/v1/deploy/command", status_code=201, tags=["deploy"],
              responses={202: {"description": "held until a second admin approves"},
                         403: {"description": "not on the environment's allow-list"}})
    async def command(body: CommandRequest, identity: API, request: Request) -> JSONResponse:
        """Run one manage.py command of the environment's allow-list (playbooks/manage.yml)."""
        result = await call(console.command, identity.user, body.environment, body.command,
                            body.dry_run, body.description, remote(request))
        return JSONResponse(result, status_code=202 if result["id"] is None else 201)

    @app.get("/api/v1/deploy/status/{run_id}", tags=["deploy"])
    async def status(run_id: RunId, identity: API) -> dict[str, Any]:
        """A run's state, with its per-host summary."""
        run = await call(console.run, run_id)
        hosts = await call(lambda: runs.store().host_summaries(run_id))
        return {**run_json(run), "hosts": hosts,
                "active": runs.is_active(run["run_uuid"])}

    @app.get("/api/v1/deploy/logs/{run_id}", tags=["deploy"])
    async def logs(run_id: RunId, identity: API, offset: LogOffset = 0) -> dict[str, Any]:
        """The log from ``offset`` on; ask again with ``next_offset`` until ``complete``."""
        return await call(console.log, run_id, offset)

    @app.get("/api/v1/deploy/logs/{run_id}/stream", tags=["deploy"],
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "events `log` (text, offset), `status` and `end`"}})
    async def stream(run_id: RunId, identity: API, request: Request,
                     offset: LogOffset = 0) -> StreamingResponse:
        """The log as server-sent events, live while the run goes; resumes at Last-Event-ID."""
        last_event = request.headers.get("last-event-id", "").strip()
        if last_event:
            if not re.fullmatch(r"[0-9]{1,10}", last_event) or int(last_event) > MAX_LOG_OFFSET:
                raise ConsoleError(422, f"Last-Event-ID must be a log offset from 0 to "
                                   f"{MAX_LOG_OFFSET}, not {last_event[:40]!r}")
            offset = int(last_event)
        run = await call(console.run, run_id)
        return StreamingResponse(
            follow(run, offset, request), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def follow(run: dict[str, Any], offset: int, request: Request) -> AsyncIterator[str]:
        store = history_store.open_store(runs.store_url)
        run_id, run_uuid = run["id"], run["run_uuid"]
        last_status = None
        quiet_since = anyio.current_time()
        try:
            yield "retry: 1000\n\n"
            while True:
                text, next_offset, state = await anyio.to_thread.run_sync(
                    store.read_log, run_id, offset)
                if text:
                    yield _sse("log", {"text": text, "offset": offset}, next_offset)
                    offset, quiet_since = next_offset, anyio.current_time()
                if state != last_status:
                    current = await anyio.to_thread.run_sync(store.get_run, run_id) or {}
                    yield _sse("status", run_json(current))
                    last_status = state
                if state is None:
                    return
                if state != "running" and not runs.is_active(run_uuid):
                    # The console may have appended after the status changed: read once more.
                    text, next_offset, state = await anyio.to_thread.run_sync(
                        store.read_log, run_id, offset)
                    if text:
                        yield _sse("log", {"text": text, "offset": offset}, next_offset)
                    current = await anyio.to_thread.run_sync(store.get_run, run_id) or {}
                    yield _sse("end", run_json(current), next_offset)
                    return
                if await request.is_disconnected():
                    return
                if anyio.current_time() - quiet_since > HEARTBEAT_SECONDS:
                    yield ": still running\n\n"
                    quiet_since = anyio.current_time()
                await anyio.sleep(config.log_poll_interval)
        finally:
            store.close()

    @app.get("/api/v1/deploy/history", tags=["deploy"])
    async def history(identity: API, environment: str | None = None, status: str | None = None,
                      page: Page = 1,
                      per_page: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
        """Runs, newest first, with filters and paging."""
        result = await call(console.history, environment, status, page, per_page)
        result["runs"] = [run_json(run) for run in result["runs"]]
        return result

    @app.get("/api/v1/deploy/history/{run_id}", tags=["deploy"])
    async def history_run(run_id: RunId, identity: API) -> dict[str, Any]:
        """One run: its record, per-host summary, task results and full log."""
        run = await call(console.run, run_id)
        store = runs.store
        hosts = await call(lambda: store().host_summaries(run_id))
        tasks = await call(lambda: store().task_results(run_id))
        return {**run_json(run), "logs": run.get("logs") or "", "hosts": hosts,
                "command_output": run.get("command_output"),
                "tasks": _jsonable(tasks), "extra_vars": run.get("extra_vars"),
                "inventory": run.get("inventory"), "ansible_version": run.get("ansible_version")}

    @app.post("/api/v1/deploy/cancel/{run_id}", tags=["deploy"])
    async def cancel(run_id: RunId, identity: API, request: Request) -> dict[str, Any]:
        """Stop a running run's whole process group and release its deploy lock."""
        return await call(console.cancel, identity.user, run_id, remote(request))

    @app.get("/api/v1/approvals", tags=["approvals"])
    async def approvals(identity: API, state: str | None = None) -> dict[str, Any]:
        if state not in (None, "pending", "approved", "rejected", "cancelled"):
            raise ConsoleError(422, "state is one of pending, approved, rejected, cancelled")
        return {"approvals": await call(db.approvals, state)}

    @app.post("/api/v1/approvals/{approval_id}/approve", tags=["approvals"], status_code=201)
    async def approve(approval_id: ApprovalId, identity: API, request: Request) -> dict[str, Any]:
        """Start a held run; only an admin other than the one who asked."""
        return await call(console.approve, identity.user, approval_id, remote(request))

    @app.post("/api/v1/approvals/{approval_id}/reject", tags=["approvals"])
    async def reject(approval_id: ApprovalId, identity: API, request: Request) -> dict[str, Any]:
        return await call(console.reject, identity.user, approval_id, remote(request))

    @app.get("/api/v1/audit", tags=["admin"])
    async def audit(identity: ADMIN, action: str | None = None, actor: str | None = None,
                    page: Page = 1,
                    per_page: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        rows = await call(lambda: db.audit_rows(per_page, (page - 1) * per_page, action, actor))
        return {"audit": rows, "page": page, "per_page": per_page}

    @app.get("/api/v1/environments", tags=["deploy"])
    async def environments(identity: API) -> dict[str, Any]:
        return {"environments": [
            {"name": env.name, "default_branch": env.default_branch,
             "requires_approval": env.requires_approval,
             "commands": [{"name": entry.name, "command": entry.command,
                           "dry_run": entry.dry_run} for entry in env.commands],
             "may_deploy": identity.user.can_deploy(env.name)}
            for _, env in sorted(config.environments.items())]}

    @app.get("/api/v1/me", tags=["admin"])
    async def me(identity: API) -> dict[str, Any]:
        user = identity.user
        return {"name": user.name, "role": user.role, "environments": list(user.environments)}

    @app.get("/api/v1/users", tags=["admin"])
    async def users(identity: ADMIN) -> dict[str, Any]:
        return {"users": [{"name": u.name, "role": u.role, "environments": list(u.environments)}
                          for u in await call(db.users)]}

    @app.post("/api/v1/users", tags=["admin"], status_code=201)
    async def add_user(body: NewUserRequest, identity: ADMIN, request: Request
                       ) -> dict[str, Any]:
        user = await call(console.add_user, identity.user.name, body.name, body.role,
                          body.environments, body.password, remote(request))
        return {"name": user.name, "role": user.role, "environments": list(user.environments)}

    @app.delete("/api/v1/users/{name}", tags=["admin"])
    async def delete_user(name: str, identity: ADMIN, request: Request) -> dict[str, Any]:
        """Delete an account with its tokens and sessions; its pending requests are cancelled."""
        cancelled = await call(console.delete_user, identity.user, name, remote(request))
        return {"deleted": name, "cancelled_approvals": cancelled}

    @app.get("/api/v1/users/{name}/tokens", tags=["tokens"])
    async def list_tokens(name: str, identity: API, request: Request) -> dict[str, Any]:
        """A user's API tokens (admins: anyone's; others: their own), never their secrets."""
        tokens = await call(console.tokens, identity.user, name, remote(request))
        return {"name": name, "tokens": _jsonable(tokens)}

    @app.post("/api/v1/users/{name}/tokens", tags=["tokens"], status_code=201)
    async def add_token(name: str, identity: API, request: Request,
                        body: NewTokenRequest | None = None) -> dict[str, Any]:
        """A new API token for a user (admins: anyone; others: themselves). Shown once."""
        token = await call(console.new_token, identity.user, name, remote(request),
                           body.expires if body else None)
        return _jsonable(token)

    @app.delete("/api/v1/tokens/{token_id}", tags=["tokens"])
    async def revoke_token(token_id: TokenId, identity: API, request: Request
                           ) -> dict[str, Any]:
        """Revoke one API token (admins: anyone's; others: their own)."""
        return await call(console.revoke_token, identity.user, token_id, remote(request))

    @app.post("/api/v1/me/password", tags=["tokens"])
    async def change_password(body: PasswordChange, identity: API, request: Request
                              ) -> dict[str, Any]:
        """Change one's own password; every other session of the account ends."""
        ended = await call(console.change_password, identity.user, body.current_password,
                           body.new_password, remote(request), identity.session_digest)
        return {"name": identity.user.name, "changed": True, "ended_sessions": ended}

    # Pages

    def render(request: Request, name: str, identity: Identity | None, status_code: int = 200,
               **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, name, {"me": identity.user if identity else None,
                            "csrf": identity.csrf if identity else None,
                            "nonce": request.state.nonce, **context},
            status_code=status_code)

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request, next: str = "/runs") -> HTMLResponse:
        token = security.new_secret()
        response = render(request, "login.html", None, login_csrf=token, next=_safe_next(next))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=config.cookie_secure, path="/login")
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, name: Annotated[str, Form()],
                    password: Annotated[str, Form()], csrf_token: Annotated[str, Form()],
                    next: Annotated[str, Form()] = "/runs") -> Any:
        if not security.same_secret(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            token = security.new_secret()
            response = render(request, "login.html", None, status_code=403, login_csrf=token,
                              next=_safe_next(next), error="The login form expired; try again.")
            response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                                secure=config.cookie_secure, path="/login")
            return response
        try:
            user = await call(console.login, name, password, remote(request))
        except ConsoleError as exc:
            if exc.status != 429:
                raise
            response = render(request, "login.html", None, status_code=429,
                              login_csrf=csrf_token, next=_safe_next(next), error=exc.message)
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
            return response
        if user is None:
            return render(request, "login.html", None, status_code=401, login_csrf=csrf_token,
                          next=_safe_next(next), error="Wrong name or password.")
        session = security.new_secret()
        await call(db.add_session, user.id, security.secret_digest(session),
                   security.new_secret(), config.session_hours)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict",
                            secure=config.cookie_secure, path="/",
                            max_age=int(config.session_hours * 3600))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(identity: PAGE, csrf_token: Annotated[str, Form()]) -> RedirectResponse:
        check_form_csrf(identity, csrf_token)
        await call(db.delete_session, identity.session_digest)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/runs", include_in_schema=False)
    async def runs_page(request: Request, identity: PAGE, environment: str = "",
                        status: str = "", page: Page = 1) -> HTMLResponse:
        try:
            result = await call(console.history, environment or None, status or None, page, 25)
            error = None
        except ConsoleError as exc:
            result = {"runs": [], "total": 0, "page": 1, "pages": 1, "per_page": 25}
            error = exc.message
        return render(request, "runs.html", identity, error=error, filters={
            "environment": environment, "status": status},
            environments=sorted(config.environments), statuses=history_store.STATUSES,
            **result)

    async def run_page_response(request: Request, identity: Identity, run_id: int,
                                error: str | None = None, status_code: int = 200
                                ) -> HTMLResponse:
        run = await call(console.run, run_id)
        hosts = await call(lambda: runs.store().host_summaries(run_id))
        text, offset, _ = await call(lambda: runs.store().read_log(run_id, 0))
        active = runs.is_active(run["run_uuid"])
        environment = config.environments.get(run["environment"])
        may_act = environment is not None and identity.user.can_deploy(environment.name)
        return render(request, "run.html", identity, status_code=status_code, run=run,
                      hosts=hosts, log_text=text, log_offset=offset,
                      following=run["status"] == "running" or active,
                      may_cancel=may_act and run["status"] == "running",
                      may_rollback=may_act and run["status"] == "success"
                      and bool(run.get("release_id")),
                      error=error)

    @app.get("/runs/{run_id}", include_in_schema=False)
    async def run_page(request: Request, run_id: RunId, identity: PAGE) -> HTMLResponse:
        try:
            return await run_page_response(request, identity, run_id)
        except ConsoleError as exc:
            return render(request, "error.html", identity, status_code=exc.status,
                          error=exc.message)

    @app.post("/runs/{run_id}/cancel", include_in_schema=False)
    async def cancel_form(request: Request, run_id: RunId, identity: PAGE,
                          csrf_token: Annotated[str, Form()]) -> Any:
        check_form_csrf(identity, csrf_token)
        try:
            await call(console.cancel, identity.user, run_id, remote(request))
        except ConsoleError as exc:
            return await run_page_response(request, identity, run_id, exc.message, exc.status)
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    @app.post("/runs/{run_id}/rollback", include_in_schema=False)
    async def rollback_form(request: Request, run_id: RunId, identity: PAGE,
                            csrf_token: Annotated[str, Form()],
                            restore_db: Annotated[bool, Form()] = False) -> Any:
        check_form_csrf(identity, csrf_token)
        try:
            run = await call(console.run, run_id)
            result = await call(console.rollback, identity.user, run["environment"], None,
                                run_id, restore_db, f"rollback to the release of run {run_id}",
                                remote(request))
        except ConsoleError as exc:
            return await run_page_response(request, identity, run_id, exc.message, exc.status)
        target = f"/runs/{result['id']}" if result["id"] else "/approvals"
        return RedirectResponse(target, status_code=303)

    @app.get("/deploy", include_in_schema=False)
    async def deploy_page(request: Request, identity: PAGE) -> HTMLResponse:
        return render(request, "deploy.html", identity,
                      environments=console.deployable(identity.user), form={})

    @app.post("/deploy", include_in_schema=False)
    async def deploy_form(request: Request, identity: PAGE,
                          csrf_token: Annotated[str, Form()],
                          environment: Annotated[str, Form()] = "",
                          branch: Annotated[str, Form()] = "",
                          skip_build: Annotated[bool, Form()] = False,
                          skip_migrations: Annotated[bool, Form()] = False,
                          description: Annotated[str, Form()] = "") -> Any:
        check_form_csrf(identity, csrf_token)
        try:
            result = await call(console.trigger, identity.user, environment, branch,
                                skip_build, skip_migrations, description, remote(request))
        except ConsoleError as exc:
            return render(request, "deploy.html", identity, status_code=exc.status,
                          environments=console.deployable(identity.user), error=exc.message,
                          form={"environment": environment, "branch": branch,
                                "skip_build": skip_build, "skip_migrations": skip_migrations,
                                "description": description})
        target = f"/runs/{result['id']}" if result["id"] else "/approvals"
        return RedirectResponse(target, status_code=303)

    @app.post("/commands", include_in_schema=False)
    async def command_form(request: Request, identity: PAGE,
                           csrf_token: Annotated[str, Form()],
                           environment: Annotated[str, Form()] = "",
                           command: Annotated[str, Form()] = "",
                           dry_run: Annotated[bool, Form()] = False) -> Any:
        check_form_csrf(identity, csrf_token)
        try:
            result = await call(console.command, identity.user, environment, command, dry_run,
                                None, remote(request))
        except ConsoleError as exc:
            return render(request, "deploy.html", identity, status_code=exc.status,
                          environments=console.deployable(identity.user), error=exc.message,
                          form={"environment": environment})
        target = f"/runs/{result['id']}" if result["id"] else "/approvals"
        return RedirectResponse(target, status_code=303)

    @app.get("/approvals", include_in_schema=False)
    async def approvals_page(request: Request, identity: PAGE) -> HTMLResponse:
        return render(request, "approvals.html", identity,
                      approvals=await call(db.approvals, None))

    @app.post("/approvals/{approval_id}/{decision}", include_in_schema=False)
    async def decide_form(request: Request, approval_id: ApprovalId, decision: str,
                          identity: PAGE,
                          csrf_token: Annotated[str, Form()]) -> Any:
        check_form_csrf(identity, csrf_token)
        action = {"approve": console.approve, "reject": console.reject}.get(decision)
        if action is None:
            raise ConsoleError(404, "no such decision")
        try:
            result = await call(action, identity.user, approval_id, remote(request))
        except ConsoleError as exc:
            return render(request, "approvals.html", identity, status_code=exc.status,
                          approvals=await call(db.approvals, None), error=exc.message)
        target = f"/runs/{result['id']}" if result.get("id") else "/approvals"
        return RedirectResponse(target, status_code=303)

    @app.get("/audit", include_in_schema=False)
    async def audit_page(request: Request, identity: PAGE, page: Page = 1) -> HTMLResponse:
        if not identity.user.is_admin:
            return render(request, "error.html", identity, status_code=403,
                          error="Only admins may read the audit table.")
        rows = await call(lambda: db.audit_rows(50, (page - 1) * 50))
        return render(request, "audit.html", identity, rows=rows, page=page)

    async def account_response(request: Request, identity: Identity, name: str,
                               status_code: int = 200, **context: Any) -> HTMLResponse:
        try:
            tokens = await call(console.tokens, identity.user, name, remote(request))
        except ConsoleError as exc:
            return render(request, "error.html", identity, status_code=exc.status,
                          error=exc.message)
        return render(request, "account.html", identity, status_code=status_code, target=name,
                      tokens=tokens, **context)

    @app.get("/account", include_in_schema=False)
    async def account_page(request: Request, identity: PAGE, user: str = "") -> HTMLResponse:
        """One's password and API tokens; an admin may list and revoke anyone's (?user=)."""
        return await account_response(request, identity, user or identity.user.name)

    @app.post("/account/password", include_in_schema=False)
    async def password_form(request: Request, identity: PAGE,
                            csrf_token: Annotated[str, Form()],
                            current_password: Annotated[str, Form()],
                            new_password: Annotated[str, Form()],
                            new_password_again: Annotated[str, Form()]) -> HTMLResponse:
        check_form_csrf(identity, csrf_token)
        name = identity.user.name
        if new_password != new_password_again:
            return await account_response(request, identity, name, 422,
                                          error="The two new passwords differ.")
        try:
            ended = await call(console.change_password, identity.user, current_password,
                               new_password, remote(request), identity.session_digest)
        except ConsoleError as exc:
            response = await account_response(request, identity, name, exc.status,
                                              error=exc.message)
            if "retry_after" in exc.extra:
                response.headers["Retry-After"] = str(exc.extra["retry_after"])
            return response
        return await account_response(request, identity, name, notice=(
            f"Your password is changed; {ended} other session(s) of yours ended."))

    @app.post("/account/tokens", include_in_schema=False)
    async def token_form(request: Request, identity: PAGE, csrf_token: Annotated[str, Form()],
                         user: Annotated[str, Form()] = "",
                         expires: Annotated[str, Form()] = "") -> HTMLResponse:
        check_form_csrf(identity, csrf_token)
        name = user or identity.user.name
        try:
            token = await call(console.new_token, identity.user, name, remote(request),
                               expires or None)
        except ConsoleError as exc:
            if exc.status in (403, 404):
                return render(request, "error.html", identity, status_code=exc.status,
                              error=exc.message)
            return await account_response(request, identity, name, exc.status,
                                          error=exc.message)
        return await account_response(request, identity, name, new_token=token)

    @app.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
    async def revoke_form(request: Request, token_id: TokenId, identity: PAGE,
                          csrf_token: Annotated[str, Form()]) -> Any:
        check_form_csrf(identity, csrf_token)
        try:
            revoked = await call(console.revoke_token, identity.user, token_id, remote(request))
        except ConsoleError as exc:
            return render(request, "error.html", identity, status_code=exc.status,
                          error=exc.message)
        target = ("/account" if revoked["name"] == identity.user.name
                  else f"/account?user={quote(revoked['name'])}")
        return RedirectResponse(target, status_code=303)

    return app


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no //host) may follow a login."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target
