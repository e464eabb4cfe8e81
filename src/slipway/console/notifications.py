"""Notifications the console sends itself: ``approval_needed`` when it holds a run for the
approval of a second admin. The targets are the environment's ``slipway_notifications``, read
from its inventory (vault values included) by a fixed playbook (the environment's
``notify_playbook``, by default the collection's playbooks/notify.yml) with the
slipway.django.notify action: in a background thread, so a receiver that is slow or down never
holds up or fails the request; the outcome goes to the audit table, without secrets."""

from __future__ import annotations

import logging
import threading
from typing import Any

from slipway.console import sideplays
from slipway.console.config import Config, Environment
from slipway.console.db import ConsoleDB
from slipway.console.runs import RunManager

LOG = logging.getLogger("slipway.console")
# Each target: 5 s a send, one retry; the playbook's own start on top.
TIMEOUT_SECONDS = 120
NOTIFY_TASK = "Notify the environment's targets"
ACTOR = "console"


class Notifier:
    def __init__(self, config: Config, db: ConsoleDB, runs: RunManager) -> None:
        self.config = config
        self.db = db
        self.runs = runs

    def approval_needed(self, environment: Environment, who: str, kind: str,
                        params: dict[str, Any], approval_id: int) -> threading.Thread:
        """Send ``approval_needed`` in the background; returns the thread."""
        what = kind if kind != "command" else f"command {params.get('command_name')}"
        branch = str(params.get("branch") or "")
        detail = f"{what}{f' of {branch}' if branch else ''} by {who} waits for approval " \
                 f"{approval_id}"
        extravars = {"slipway_notify_event": "approval_needed",
                     "slipway_notify_environment": environment.name,
                     "slipway_notify_who": who, "slipway_notify_branch": branch,
                     "slipway_notify_detail": detail,
                     "slipway_notify_run_url": (f"{self.config.public_url}/approvals"
                                                if self.config.public_url else "")}
        thread = threading.Thread(target=self._send, args=(environment, extravars, approval_id),
                                  daemon=True, name=f"slipway-notify-approval-{approval_id}")
        thread.start()
        return thread

    def _send(self, environment: Environment, extravars: dict[str, Any],
              approval_id: int) -> None:
        try:
            playbook = environment.notify_playbook
            if not playbook.is_file():
                raise FileNotFoundError(f"the notify playbook {playbook} does not exist")
            rc, events = sideplays.run_side_playbook(
                self.config, self.runs, environment, playbook, "notify", extravars,
                TIMEOUT_SECONDS)
            outcomes, error = _outcomes(events)
            if error is None and rc != 0:
                error = f"the notify playbook ended with exit code {rc}"
        except Exception as exc:  # noqa: BLE001 - never raised into the console
            outcomes, error = [], f"{exc.__class__.__name__}: {exc}"[:500]
        delivered = sum(1 for outcome in outcomes if outcome.get("delivered"))
        if error is not None:
            result = "failed"
        elif not outcomes:
            result = "no target"
        elif delivered == len(outcomes):
            result = "delivered"
        else:
            result = "not delivered"
        try:
            self.db.audit(ACTOR, "notify", result, environment.name, event="approval_needed",
                          approval_id=approval_id, outcomes=outcomes,
                          **({"error": error} if error else {}))
        except Exception:  # noqa: BLE001
            LOG.exception("cannot audit the approval_needed notification of approval %s",
                          approval_id)


def _outcomes(events: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The notify task's outcomes (already without secrets), or why there are none."""
    error = None
    for event in events:
        data = event.get("event_data") or {}
        kind = event.get("event")
        result = data.get("res") or {}
        if kind == "runner_on_ok" and (data.get("task") or "").strip() == NOTIFY_TASK:
            keys = ("target", "delivered", "attempts", "detail")
            return [{key: entry.get(key) for key in keys}
                    for entry in result.get("outcomes") or [] if isinstance(entry, dict)], None
        if kind in ("runner_on_failed", "runner_on_unreachable") and error is None:
            error = str(result.get("msg") or kind)[:500]
    return [], error
