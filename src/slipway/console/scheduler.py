"""Scheduled deploys: a thread of the console process that looks every ``schedule_tick`` seconds
for schedules come due (their cron expression, in UTC) and hands each to the service, which
starts it as ``schedule:ENV``, holds it for approval, or skips it when the environment is busy.

A schedule due while the console was down is not caught up: the next due time is counted
from when the console started. Its clock is UTC, moved by ``SLIPWAY_CONSOLE_TIME_OFFSET``
seconds when that is set: for the tests, which cannot wait for a real 04:30. It moves nothing
but the scheduler's idea of the time (the history, sessions and tokens keep the real one).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slipway.console.config import Schedule
from slipway.console.service import Console
from slipway.history.store import utcnow

LOG = logging.getLogger("slipway.console")
TIME_OFFSET_VARIABLE = "SLIPWAY_CONSOLE_TIME_OFFSET"


def clock() -> Callable[[], datetime]:
    """Naive UTC now, plus the offset of ``SLIPWAY_CONSOLE_TIME_OFFSET`` (seconds) if set."""
    text = os.environ.get(TIME_OFFSET_VARIABLE, "").strip()
    try:
        offset = float(text) if text else 0.0
    except ValueError:
        offset = math.nan
    if not math.isfinite(offset):
        raise ValueError(f"{TIME_OFFSET_VARIABLE} must be a number of seconds, not {text!r}")
    if not offset:
        return utcnow
    return lambda: utcnow() + timedelta(seconds=offset)


class Scheduler:
    def __init__(self, console: Console, schedules: tuple[Schedule, ...], tick: float,
                 now: Callable[[], datetime] | None = None) -> None:
        self.console = console
        self.schedules = schedules
        self.tick = tick
        self.now = now or clock()
        self._next: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        now = self.now()
        with self._lock:
            self._next = {schedule.key: schedule.cron.next_after(now)
                          for schedule in self.schedules}
        if self.schedules:
            self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            self.fire_due()

    def fire_due(self) -> None:
        """Fire every schedule due by now, in the order of the configuration, each once."""
        for schedule in self.schedules:
            if self._stop.is_set():
                return
            now = self.now()
            with self._lock:
                due = self._next.get(schedule.key)
                if due is None or now < due:
                    continue
                self._next[schedule.key] = schedule.cron.next_after(now)
            try:
                self.console.scheduled(schedule, now)
            except Exception as exc:  # the store may be down: the next one is tried anyway
                LOG.exception("schedule %s failed", schedule.key)
                reason = f"{type(exc).__name__}: {exc}"[:300]
                try:
                    self.console.db.audit(f"schedule:{schedule.environment}", "schedule",
                                          "failed", schedule.environment, reason=reason)
                    self.console.db.set_schedule_outcome(schedule.key, now, "failed",
                                                         reason=reason)
                except Exception:
                    LOG.exception("cannot record the failure of schedule %s", schedule.key)

    def listing(self) -> list[dict[str, Any]]:
        """Each schedule with its next due time and its last outcome."""
        outcomes = self.console.db.schedule_outcomes()
        with self._lock:
            upcoming = dict(self._next)
        return [{"environment": schedule.environment, "branch": schedule.branch,
                 "cron": schedule.cron.expression, "description": schedule.description,
                 "next_run": upcoming.get(schedule.key), "last": outcomes.get(schedule.key)}
                for schedule in self.schedules]
