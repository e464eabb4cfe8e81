"""A background thread that writes one run's records to the deploy history.

The playbook thread only appends operations to a deque; this thread wakes every
``flush_interval`` seconds, scrubs secrets, merges what accumulated into one transaction and
writes it. If the store cannot be reached, the batches go to the spool and the run goes on.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slipway.history.store import (
    HistoryStore,
    SecretScrubber,
    Spool,
    default_spool_dir,
    redact_url,
)

MESSAGE_LIMIT = 4000


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _truncate(text: Any) -> Any:
    if isinstance(text, str) and len(text) > MESSAGE_LIMIT:
        return text[:MESSAGE_LIMIT] + " [...]"
    return text


def _utc(timestamp: float) -> datetime:
    """The naive UTC datetime the store keeps, from a time.time() taken on the hot path."""
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


def _merge(operations: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Adjacent log lines become one append and adjacent task results one insert."""
    merged: list[tuple[str, Any]] = []
    for kind, payload in operations:
        if kind == "log" and merged and merged[-1][0] == "log":
            merged[-1] = ("log", merged[-1][1] + payload)
        elif kind == "task":
            if merged and merged[-1][0] == "tasks":
                merged[-1][1].append(payload)
            else:
                merged.append(("tasks", [payload]))
        else:
            merged.append((kind, payload))
    return merged


class HistoryWriter:
    """Owns the store connection for one run; ``submit`` is the only call on the hot path."""

    def __init__(self, url: str | None, spool_dir: str, run_uuid: str, scrubber: SecretScrubber,
                 flush_interval: float = 1.0, connect_timeout: int = 5) -> None:
        self.run_uuid = run_uuid
        self.warnings: collections.deque[str] = collections.deque()
        self.spooled = False
        self._store = HistoryStore(url, connect_timeout=connect_timeout)
        self._spool = Spool(spool_dir, self._store.key)
        self._scrubber = scrubber
        self._interval = flush_interval
        self._pending: collections.deque[tuple[str, Any]] = collections.deque()
        self._stop = threading.Event()
        self._wake = threading.Event()
        # A daemon thread: the interpreter must not wait for it before atexit handlers run.
        self._thread = threading.Thread(target=self._run, name="slipway-deploy-history",
                                        daemon=True)

    @property
    def store_url(self) -> str:
        return redact_url(self._store.url)

    def start(self) -> None:
        self._thread.start()

    def submit(self, kind: str, payload: Any) -> None:
        self._pending.append((kind, payload))

    def close(self, timeout: float) -> bool:
        """Write what is pending and stop; False if that took longer than ``timeout``."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        online = self._open()
        while True:
            stopping = self._stop.is_set()
            if not stopping:
                self._wake.wait(self._interval)
                self._wake.clear()
            operations = self._drain()
            if operations:
                online = self._write(operations, online)
            if stopping and not self._pending:
                break
        self._spool.close()
        self._store.close()

    def _open(self) -> bool:
        try:
            self._store.ensure_schema()
            replayed = self._spool.replay(self._store)
            self._store.mark_stale_runs(socket.gethostname(), pid_alive, os.getpid())
        except Exception as exc:
            self._go_offline(exc)
            return False
        if replayed:
            self.warnings.append(f"deploy history: wrote {len(replayed)} spooled run(s) to "
                                 f"{self.store_url}")
        return True

    def _drain(self) -> list[tuple[str, Any]]:
        operations = []
        while self._pending:
            kind, payload = self._pending.popleft()
            payload = self._scrubber.scrub_all(payload)
            if kind == "task":
                payload["message"] = _truncate(payload.get("message"))
                payload["started_at"] = _utc(payload["started_at"])
            operations.append((kind, payload))
        return _merge(operations)

    def _write(self, operations: list[tuple[str, Any]], online: bool) -> bool:
        if online:
            try:
                self._store.apply(self.run_uuid, operations)
                return True
            except Exception as exc:
                self._go_offline(exc)
        try:
            self._spool.append(self.run_uuid, operations)
        except OSError as exc:
            self.warnings.append(f"deploy history: cannot spool records to "
                                 f"{self._spool.directory}: {exc}; they are lost")
        return False

    def _go_offline(self, exc: Exception) -> None:
        self.spooled = True
        reason = " ".join(str(exc).split())
        self.warnings.append(f"deploy history: store {self.store_url} unavailable ({reason}); "
                             f"this run is spooled to {self._spool.directory} and will be "
                             "written by the next run")


def start_writer(url: str, options: Callable[[str], Any], run_uuid: str,
                 scrubber: SecretScrubber) -> HistoryWriter:
    """The writer of one run to the store at ``url`` (see ``slipway.history.resolve_store_url``),
    with the callback's other options."""
    writer = HistoryWriter(url, options("spool_dir") or default_spool_dir(), run_uuid, scrubber,
                           float(options("flush_interval")), int(options("connect_timeout")))
    writer.start()
    return writer
