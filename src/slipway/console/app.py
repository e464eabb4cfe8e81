"""The web application: the JSON API under /api/v1 (``api_runs``, ``api_admin``), the live log
as server-sent events, and server-rendered pages for people (``pages``). What the routes
depend on (the application's objects, who is asking) is in ``deps``.
"""

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slipway.console import api_admin, api_runs, pages, security
from slipway.console.config import Config
from slipway.console.db import ConsoleDB
from slipway.console.deps import CSRF_HEADER, LoginRequired
from slipway.console.runs import RunManager
from slipway.console.scheduler import Scheduler
from slipway.console.service import Console, ConsoleError
from slipway.console.shapes import elapsed
from slipway.history import store as history_store
from slipway.history.cli import format_duration

TEMPLATES = Path(__file__).parent / "templates"
DESCRIPTION = ("Trigger, watch, cancel and roll back deploys of slipway.django. Authenticate "
               "with `Authorization: Bearer TOKEN` (`slipway-console token NAME`) or a browser "
               f"session (unsafe methods then need the `{CSRF_HEADER}` header).")


def create_app(config: Config) -> FastAPI:
    db = ConsoleDB(config.console_db)
    db.create()
    runs = RunManager(config, db)
    console = Console(config, db, runs)
    scheduler = Scheduler(console, config.schedules, config.schedule_tick)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        interrupted = await anyio.to_thread.run_sync(runs.recover,
                                                     console.release_after_interrupt)
        app.state.interrupted_at_start = interrupted
        scheduler.start()
        yield
        await anyio.to_thread.run_sync(scheduler.stop)
        await anyio.to_thread.run_sync(runs.stop_all, "the console stopped")

    app = FastAPI(title="slipway deploy console", version="1", description=DESCRIPTION,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.config, app.state.db, app.state.runs = config, db, runs
    app.state.console = console
    app.state.scheduler = scheduler
    app.state.templates = make_templates()
    for error, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(error, handler)
    # Inside security_headers, so that a refusal gets the same headers as any answer.
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.middleware("http")(security_headers)
    for module in (api_runs, api_admin, pages):
        app.include_router(module.router)
    return app


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["duration"] = format_duration
    templates.env.filters["when"] = lambda value: (value.strftime("%Y-%m-%d %H:%M:%S")
                                                   if isinstance(value, datetime) else "-")
    templates.env.globals["elapsed"] = elapsed
    templates.env.globals["min_password_length"] = security.MIN_PASSWORD_LENGTH
    return templates


# Errors

async def console_error(request: Request, exc: ConsoleError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status,
                        headers=headers)


async def store_error(request: Request, exc: history_store.HistoryStoreError) -> JSONResponse:
    return JSONResponse({"detail": f"the deploy history store is unavailable: {exc}"},
                        status_code=503)


async def login_required(request: Request, exc: LoginRequired) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


async def invalid_request(request: Request, exc: RequestValidationError) -> Any:
    if request.url.path.startswith("/api/"):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(f"{' '.join(str(part) for part in error['loc'])}: {error['msg']}"
                         for error in exc.errors())
    return pages.render(request, "error.html", None, status_code=422,
                        error=f"Malformed request: {problems}")


EXCEPTION_HANDLERS: dict[type[Exception], Callable[..., Any]] = {
    ConsoleError: console_error,
    history_store.HistoryStoreError: store_error,
    LoginRequired: login_required,
    RequestValidationError: invalid_request,
}


# Middleware

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
