"""The JSON API of runs: trigger, roll back, run a command, follow, read the history, cancel,
and decide approval requests."""

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from slipway.console import applogs, webhooks
from slipway.console.deps import (
    API,
    MAX_ID,
    MAX_LOG_OFFSET,
    ApprovalId,
    Database,
    LogOffset,
    Page,
    RunId,
    Runs,
    Schedules,
    Service,
    Settings,
    call,
    remote,
)
from slipway.console.runs import RunManager
from slipway.console.service import ConsoleError
from slipway.console.shapes import jsonable, run_json, sse
from slipway.history import store as history_store
from slipway.phases import progress as phase_progress

HEARTBEAT_SECONDS = 15.0

router = APIRouter(prefix="/api/v1")


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


# Starting runs

@router.post("/deploy/trigger", status_code=201, tags=["deploy"],
             responses={202: {"description": "held until a second admin approves"},
                        409: {"description": "the environment has a run going"}})
async def trigger(body: TriggerRequest, identity: API, request: Request,
                  console: Service) -> JSONResponse:
    """Start a deploy (returns its id), or hold it for approval."""
    result = await call(console.trigger, identity.user, body.environment, body.branch,
                        body.skip_build, body.skip_migrations, body.description,
                        remote(request))
    return JSONResponse(result, status_code=202 if result["id"] is None else 201)


@router.post("/deploy/rollback", status_code=201, tags=["deploy"],
             responses={202: {"description": "held until a second admin approves"}})
async def rollback(body: RollbackRequest, identity: API, request: Request,
                   console: Service) -> JSONResponse:
    """Roll an environment back to a release, a run's release, or the previous good one."""
    result = await call(console.rollback, identity.user, body.environment, body.release,
                        body.deploy_id, body.restore_db, body.description, remote(request))
    return JSONResponse(result, status_code=202 if result["id"] is None else 201)


@router.post("/deploy/command", status_code=201, tags=["deploy"],
             responses={202: {"description": "held until a second admin approves"},
                        403: {"description": "not on the environment's allow-list"}})
async def command(body: CommandRequest, identity: API, request: Request,
                  console: Service) -> JSONResponse:
    """Run one manage.py command of the environment's allow-list (playbooks/manage.yml)."""
    result = await call(console.command, identity.user, body.environment, body.command,
                        body.dry_run, body.description, remote(request))
    return JSONResponse(result, status_code=202 if result["id"] is None else 201)


@router.post("/deploy/webhook/{environment}", status_code=201, tags=["deploy"],
             responses={200: {"description": "ignored: not a push, a duplicate, another branch"},
                        202: {"description": "held until an admin approves"},
                        401: {"description": "no signature, or not the secret's"},
                        404: {"description": "no webhook for this environment"},
                        409: {"description": "the environment has a run going"}})
async def webhook(environment: Annotated[str, PathParameter(max_length=100)],
                  request: Request, console: Service) -> JSONResponse:
    """A push from GitHub, GitLab, Gitea or Forgejo: deploy the pushed commit as
    `webhook:ENVIRONMENT`. Authenticated by the environment's webhook secret (a signature of the
    body, or GitLab's token), not by an API token."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > webhooks.MAX_BODY_BYTES:
            raise ConsoleError(413, f"a webhook body is at most {webhooks.MAX_BODY_BYTES} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    status, result = await call(console.webhook, environment, headers, bytes(body),
                                remote(request))
    return JSONResponse(result, status_code=status)


@router.get("/schedules", tags=["deploy"])
async def schedules(identity: API, scheduler: Schedules) -> dict[str, Any]:
    """The scheduled deploys: when each is next due (UTC) and how the last one went."""
    return {"schedules": jsonable(await call(scheduler.listing))}


# Following runs

@router.get("/deploy/status/{run_id}", tags=["deploy"])
async def status(run_id: RunId, identity: API, console: Service, runs: Runs) -> dict[str, Any]:
    """A run's state, with its per-host summary."""
    run = await call(console.run, run_id)
    hosts = await call(lambda: runs.store().host_summaries(run_id))
    return {**run_json(run), "hosts": hosts,
            "active": runs.is_active(run["run_uuid"])}


@router.get("/deploy/logs/{run_id}", tags=["deploy"])
async def logs(run_id: RunId, identity: API, console: Service,
               offset: LogOffset = 0) -> dict[str, Any]:
    """The log from ``offset`` on; ask again with ``next_offset`` until ``complete``."""
    return await call(console.log, run_id, offset)


@router.get("/deploy/logs/{run_id}/stream", tags=["deploy"],
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "events `log` (text, offset), `status` and `end`"}})
async def stream(run_id: RunId, identity: API, request: Request, console: Service,
                 runs: Runs, config: Settings, offset: LogOffset = 0) -> StreamingResponse:
    """The log as server-sent events, live while the run goes; resumes at Last-Event-ID."""
    last_event = request.headers.get("last-event-id", "").strip()
    if last_event:
        if not re.fullmatch(r"[0-9]{1,10}", last_event) or int(last_event) > MAX_LOG_OFFSET:
            raise ConsoleError(422, f"Last-Event-ID must be a log offset from 0 to "
                               f"{MAX_LOG_OFFSET}, not {last_event[:40]!r}")
        offset = int(last_event)
    run = await call(console.run, run_id)
    return StreamingResponse(
        follow(runs, config.log_poll_interval, run, offset, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def follow(runs: RunManager, poll_interval: float, run: dict[str, Any], offset: int,
                 request: Request) -> AsyncIterator[str]:
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
                yield sse("log", {"text": text, "offset": offset}, next_offset)
                offset, quiet_since = next_offset, anyio.current_time()
            if state != last_status:
                current = await anyio.to_thread.run_sync(store.get_run, run_id) or {}
                yield sse("status", run_json(current))
                last_status = state
            if state is None:
                return
            if state != "running" and not runs.is_active(run_uuid):
                # The console may have appended after the status changed: read once more.
                text, next_offset, state = await anyio.to_thread.run_sync(
                    store.read_log, run_id, offset)
                if text:
                    yield sse("log", {"text": text, "offset": offset}, next_offset)
                current = await anyio.to_thread.run_sync(store.get_run, run_id) or {}
                yield sse("end", run_json(current), next_offset)
                return
            if await request.is_disconnected():
                return
            if anyio.current_time() - quiet_since > HEARTBEAT_SECONDS:
                yield ": still running\n\n"
                quiet_since = anyio.current_time()
            await anyio.sleep(poll_interval)
    finally:
        store.close()


# The history

@router.get("/deploy/history", tags=["deploy"])
async def history(identity: API, console: Service, environment: str | None = None,
                  status: str | None = None, page: Page = 1,
                  per_page: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    """Runs, newest first, with filters and paging."""
    result = await call(console.history, environment, status, page, per_page)
    result["runs"] = [run_json(run) for run in result["runs"]]
    return result


@router.get("/deploy/history/{run_id}", tags=["deploy"])
async def history_run(run_id: RunId, identity: API, console: Service,
                      runs: Runs) -> dict[str, Any]:
    """One run: its record, per-host summary, task results and full log."""
    run = await call(console.run, run_id)
    store = runs.store
    hosts = await call(lambda: store().host_summaries(run_id))
    tasks = await call(lambda: store().task_results(run_id))
    return {**run_json(run), "logs": run.get("logs") or "", "hosts": hosts,
            "command_output": run.get("command_output"),
            "tasks": jsonable(tasks), "extra_vars": run.get("extra_vars"),
            "inventory": run.get("inventory"), "ansible_version": run.get("ansible_version")}


@router.get("/runs/{run_id}/progress", tags=["deploy"])
async def progress(run_id: RunId, identity: API, console: Service,
                   runs: Runs) -> dict[str, Any]:
    """The deploy's phases (lock, build, checks, backup, migrate, switch, health, cleanup),
    each pending, running, done or failed per host, from the run's task records."""
    run = await call(console.run, run_id)
    tasks = await call(lambda: runs.store().task_results(run_id))
    return {"id": run_id, "active": runs.is_active(run["run_uuid"]),
            **phase_progress(tasks, run["status"])}


@router.post("/deploy/cancel/{run_id}", tags=["deploy"])
async def cancel(run_id: RunId, identity: API, request: Request,
                 console: Service) -> dict[str, Any]:
    """Stop a running run's whole process group and release its deploy lock."""
    return await call(console.cancel, identity.user, run_id, remote(request))


# Approvals

@router.get("/approvals", tags=["approvals"])
async def approvals(identity: API, db: Database, state: str | None = None) -> dict[str, Any]:
    if state not in (None, "pending", "approved", "rejected", "cancelled"):
        raise ConsoleError(422, "state is one of pending, approved, rejected, cancelled")
    return {"approvals": await call(db.approvals, state)}


@router.post("/approvals/{approval_id}/approve", tags=["approvals"], status_code=201)
async def approve(approval_id: ApprovalId, identity: API, request: Request,
                  console: Service) -> dict[str, Any]:
    """Start a held run; only an admin other than the one who asked."""
    return await call(console.approve, identity.user, approval_id, remote(request))


@router.post("/approvals/{approval_id}/reject", tags=["approvals"])
async def reject(approval_id: ApprovalId, identity: API, request: Request,
                 console: Service) -> dict[str, Any]:
    return await call(console.reject, identity.user, approval_id, remote(request))


@router.get("/environments/{name}/logs", tags=["deploy"],
            responses={403: {"description": "may not see this environment"},
                       409: {"description": "its logs are being read already"}})
async def app_logs(name: Annotated[str, PathParameter(max_length=100)], identity: API,
                   request: Request, console: Service,
                   unit: Annotated[str, Query(max_length=20, description="one of "
                                              + ", ".join(applogs.UNITS))] = "web",
                   lines: Annotated[int, Query(ge=1, le=applogs.MAX_LINES)] = (
                       applogs.DEFAULT_LINES),
                   since: Annotated[str, Query(max_length=10, description="one of "
                                               + ", ".join(applogs.SINCE))] = (
                       applogs.DEFAULT_SINCE)) -> dict[str, Any]:
    """The last lines of the app's units (web, workers, beat, processes) per host, read-only:
    journalctl with fixed arguments, run by the environment's logs playbook."""
    return await call(console.app_log, identity.user, name, unit, lines, since,
                      remote(request))


@router.get("/environments", tags=["deploy"])
async def environments(identity: API, config: Settings) -> dict[str, Any]:
    return {"environments": [
        {"name": env.name, "default_branch": env.default_branch,
         "requires_approval": env.requires_approval,
         "commands": [{"name": entry.name, "command": entry.command,
                       "dry_run": entry.dry_run} for entry in env.commands],
         "may_deploy": identity.user.can_deploy(env.name)}
        for env in sorted(config.environments.values(), key=lambda entry: entry.name)]}
