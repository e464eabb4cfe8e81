"""The server-rendered pages for people: login, the runs and their live logs, deploy and
command forms, approvals, the audit table and one's account. Forms carry the session's CSRF
token."""

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from slipway.console import applogs, charts, security
from slipway.console.deps import (
    LOGIN_CSRF_COOKIE,
    PAGE,
    SESSION_COOKIE,
    ApprovalId,
    Database,
    Identity,
    Page,
    RunId,
    Schedules,
    Service,
    Settings,
    TokenId,
    call,
    check_form_csrf,
    get_config,
    get_console,
    get_runs,
    get_templates,
    remote,
)
from slipway.console.service import ConsoleError
from slipway.history import store as history_store
from slipway.phases import progress as phase_progress

router = APIRouter()


def render(request: Request, name: str, identity: Identity | None, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    return get_templates(request).TemplateResponse(
        request, name, {"me": identity.user if identity else None,
                        "csrf": identity.csrf if identity else None,
                        "nonce": request.state.nonce, **context},
        status_code=status_code)


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, config: Settings, next: str = "/runs") -> HTMLResponse:
    token = security.new_secret()
    response = render(request, "login.html", None, login_csrf=token, next=_safe_next(next))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=config.cookie_secure, path="/login")
    return response


@router.post("/login", include_in_schema=False)
async def login(request: Request, config: Settings, console: Service, db: Database,
                name: Annotated[str, Form()], password: Annotated[str, Form()],
                csrf_token: Annotated[str, Form()],
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


@router.post("/logout", include_in_schema=False)
async def logout(identity: PAGE, db: Database,
                 csrf_token: Annotated[str, Form()]) -> RedirectResponse:
    check_form_csrf(identity, csrf_token)
    await call(db.delete_session, identity.session_digest)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


@router.get("/runs", include_in_schema=False)
async def runs_page(request: Request, identity: PAGE, console: Service, config: Settings,
                    environment: str = "", status: str = "", page: Page = 1) -> HTMLResponse:
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
    console, runs, config = get_console(request), get_runs(request), get_config(request)
    run = await call(console.run, run_id)
    hosts = await call(lambda: runs.store().host_summaries(run_id))
    text, offset, _status = await call(lambda: runs.store().read_log(run_id, 0))
    active = runs.is_active(run["run_uuid"])
    tasks = await call(lambda: runs.store().task_results(run_id))
    environment = config.environments.get(run["environment"])
    may_act = environment is not None and identity.user.can_deploy(environment.name)
    return render(request, "run.html", identity, status_code=status_code, run=run,
                  hosts=hosts, log_text=text, log_offset=offset,
                  following=run["status"] == "running" or active,
                  may_cancel=may_act and run["status"] == "running",
                  may_rollback=may_act and run["status"] == "success"
                  and bool(run.get("release_id")),
                  progress=(phase_progress(tasks, run["status"])
                            if run.get("kind") in (None, "deploy", "rollback") else None),
                  error=error)


@router.get("/runs/by-uuid/{run_uuid}", include_in_schema=False, response_model=None)
async def run_by_uuid(request: Request, run_uuid: uuid.UUID, identity: PAGE,
                      console: Service) -> HTMLResponse | RedirectResponse:
    """Where a notification's run link leads: the run's page, found by its run_uuid."""
    try:
        run = await call(console.run_by_uuid, str(run_uuid))
    except ConsoleError as exc:
        return render(request, "error.html", identity, status_code=exc.status,
                      error=exc.message)
    return RedirectResponse(f"/runs/{int(run['id'])}", status_code=303)


@router.get("/runs/{run_id}", include_in_schema=False)
async def run_page(request: Request, run_id: RunId, identity: PAGE) -> HTMLResponse:
    try:
        return await run_page_response(request, identity, run_id)
    except ConsoleError as exc:
        return render(request, "error.html", identity, status_code=exc.status,
                      error=exc.message)


@router.post("/runs/{run_id}/cancel", include_in_schema=False)
async def cancel_form(request: Request, run_id: RunId, identity: PAGE, console: Service,
                      csrf_token: Annotated[str, Form()]) -> Any:
    check_form_csrf(identity, csrf_token)
    try:
        await call(console.cancel, identity.user, run_id, remote(request))
    except ConsoleError as exc:
        return await run_page_response(request, identity, run_id, exc.message, exc.status)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/rollback", include_in_schema=False)
async def rollback_form(request: Request, run_id: RunId, identity: PAGE, console: Service,
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


async def environment_page_response(request: Request, identity: Identity, name: str,
                                    page: int = 1, period: str = "week",
                                    status_code: int = 200, **context: Any) -> HTMLResponse:
    console, runs = get_console(request), get_runs(request)
    try:
        environment = await call(console.environment, name)
        if period not in charts.PERIODS:
            raise ConsoleError(422, "period is one of " + ", ".join(charts.PERIODS))
        result = await call(console.history, environment.name, None, page, 25)
    except ConsoleError as exc:
        return render(request, "error.html", identity, status_code=exc.status,
                      error=exc.message)
    now = history_store.utcnow()
    recent = await call(lambda: runs.store().list_runs(
        environment=environment.name, since=charts.since(period, now), limit=10_000))
    return render(request, "environment.html", identity, status_code=status_code,
                  environment=environment, period=period, periods=list(charts.PERIODS),
                  charts=charts.deploy_charts(recent, period, now),
                  may_deploy=identity.user.can_deploy(environment.name),
                  may_read_logs=identity.user.can_read_logs(environment.name),
                  log_units=applogs.UNITS, log_since=list(applogs.SINCE),
                  max_log_lines=applogs.MAX_LINES,
                  **{"logs_form": {"unit": "web", "lines": str(applogs.DEFAULT_LINES),
                                   "since": applogs.DEFAULT_SINCE}, **result, **context})


@router.get("/environments/{name}", include_in_schema=False)
async def environment_page(request: Request, name: str, identity: PAGE, page: Page = 1,
                           period: str = "week") -> HTMLResponse:
    """An environment: its deploy charts, its history (with "Roll back to this" on each
    successful run, for those who may deploy it) and its app's logs."""
    return await environment_page_response(request, identity, name, page, period)


@router.get("/environments/{name}/logs", include_in_schema=False)
async def environment_logs_page(request: Request, name: str, identity: PAGE, console: Service,
                                unit: str = "web", lines: str = "", since: str = "") -> Any:
    """The environment's page with the app's logs read just now (or why not)."""
    form = {"unit": unit, "lines": lines or str(applogs.DEFAULT_LINES),
            "since": since or applogs.DEFAULT_SINCE}
    try:
        count = int(form["lines"]) if form["lines"].isdigit() and len(form["lines"]) < 6 else 0
        result = await call(console.app_log, identity.user, name, unit, count, form["since"],
                            remote(request))
    except ConsoleError as exc:
        return await environment_page_response(request, identity, name, status_code=exc.status,
                                               error=exc.message, logs_form=form)
    return await environment_page_response(request, identity, name, logs=result,
                                           logs_form=form)


@router.get("/deploy", include_in_schema=False)
async def deploy_page(request: Request, identity: PAGE, console: Service) -> HTMLResponse:
    return render(request, "deploy.html", identity,
                  environments=console.deployable(identity.user), form={})


@router.post("/deploy", include_in_schema=False)
async def deploy_form(request: Request, identity: PAGE, console: Service,
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


@router.post("/commands", include_in_schema=False)
async def command_form(request: Request, identity: PAGE, console: Service,
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


@router.get("/approvals", include_in_schema=False)
async def approvals_page(request: Request, identity: PAGE, db: Database) -> HTMLResponse:
    return render(request, "approvals.html", identity,
                  approvals=await call(db.approvals, None))


@router.post("/approvals/{approval_id}/{decision}", include_in_schema=False)
async def decide_form(request: Request, approval_id: ApprovalId, decision: str,
                      identity: PAGE, console: Service, db: Database,
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


@router.get("/schedules", include_in_schema=False)
async def schedules_page(request: Request, identity: PAGE,
                         scheduler: Schedules) -> HTMLResponse:
    return render(request, "schedules.html", identity,
                  schedules=await call(scheduler.listing))


@router.get("/audit", include_in_schema=False)
async def audit_page(request: Request, identity: PAGE, db: Database,
                     page: Page = 1) -> HTMLResponse:
    if not identity.user.is_admin:
        return render(request, "error.html", identity, status_code=403,
                      error="Only admins may read the audit table.")
    rows = await call(lambda: db.audit_rows(50, (page - 1) * 50))
    return render(request, "audit.html", identity, rows=rows, page=page)


async def account_response(request: Request, identity: Identity, name: str,
                           status_code: int = 200, **context: Any) -> HTMLResponse:
    console = get_console(request)
    try:
        tokens = await call(console.tokens, identity.user, name, remote(request))
    except ConsoleError as exc:
        return render(request, "error.html", identity, status_code=exc.status,
                      error=exc.message)
    return render(request, "account.html", identity, status_code=status_code, target=name,
                  tokens=tokens, **context)


@router.get("/account", include_in_schema=False)
async def account_page(request: Request, identity: PAGE, user: str = "") -> HTMLResponse:
    """One's password and API tokens; an admin may list and revoke anyone's (?user=)."""
    return await account_response(request, identity, user or identity.user.name)


@router.post("/account/password", include_in_schema=False)
async def password_form(request: Request, identity: PAGE, console: Service,
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


@router.post("/account/tokens", include_in_schema=False)
async def token_form(request: Request, identity: PAGE, console: Service,
                     csrf_token: Annotated[str, Form()],
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


@router.post("/account/tokens/{token_id}/revoke", include_in_schema=False)
async def revoke_form(request: Request, token_id: TokenId, identity: PAGE, console: Service,
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


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no //host) may follow a login."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/runs"
    return target
