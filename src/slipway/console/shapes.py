"""The JSON shapes of the console's answers, and the server-sent events of a live log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slipway.history import store as history_store

RUN_FIELDS = ("id", "run_uuid", "environment", "status", "branch", "release_id", "commit_hash",
              "deployed_by", "description", "error_message", "playbook", "skip_tags",
              "app", "controller", "kind", "command", "command_rc")


def json_time(value: Any) -> Any:
    return value.isoformat() + "Z" if isinstance(value, datetime) else value


def elapsed(run: dict[str, Any]) -> int | None:
    """A run's duration; for a run going, the seconds since it started."""
    if run.get("duration") is not None:
        return run["duration"]
    if run.get("status") == "running" and run.get("started_at"):
        return int((history_store.utcnow() - run["started_at"]).total_seconds())
    return None


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    data = {name: run.get(name) for name in RUN_FIELDS}
    data.update(started_at=json_time(run.get("started_at")),
                completed_at=json_time(run.get("completed_at")), duration=elapsed(run))
    return data


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return json_time(value)


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
