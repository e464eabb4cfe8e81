"""A bounded HTTP load generator for zero-downtime deploy tests, on this machine only.

    python tests/testbed/loadgen.py http://127.0.0.1:18480/health/ --rate 60 --duration 120 \\
        --json out.json [--stop-file PATH]

Sends GET requests at a steady target rate from a few worker threads, one new TCP connection
per request (so a listener that goes away shows up at once), until the duration is over, stop()
is called, the stop file appears, or SIGINT/SIGTERM arrives. Only loopback targets are
accepted, and the duration has a hard upper bound: it never runs forever.

Counts: sent; ok (2xx); failed (connection errors, timeouts, 5xx), with the first failures'
times and reasons; maintenance (503 with Retry-After: a maintenance page, not a failure);
other statuses; achieved rate; latency p50/p95/max; and, from JSON bodies
such as /health/'s, the responses per release (the body's "release" field, with the times
it was first and last seen) and the responses without one.

From Python (e.g. pytest, while an ansible-playbook subprocess runs):

    load = LoadGenerator(url, rate=60, duration=300)
    load.start()
    ...                       # deploy
    summary = load.stop()     # or load.wait() to run out the duration
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_DURATION = 3600.0
MAX_RATE = 1000.0
MAX_WORKERS = 32
MAX_BODY = 64 * 1024
USER_AGENT = "slipway-loadgen"


def check_target(url: str) -> tuple[str, int, str]:
    """Host, port and path of url; refuse anything but plain HTTP to this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{url!r}: only http:// URLs are supported")
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{url!r}: the load generator only targets 127.0.0.1, localhost or "
                         f"[::1], not {parts.hostname!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Tally:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    other_status: int = 0
    maintenance: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    releases: dict[str, dict] = field(default_factory=dict)
    without_release: int = 0


class LoadGenerator:
    """Steady-rate GET load on one loopback URL, bounded in time and concurrency."""

    def __init__(self, url: str, *, rate: float = 60.0, duration: float = 120.0,
                 timeout: float = 5.0, workers: int = 8, stop_file: str | Path | None = None,
                 release_field: str | None = "release", failures_kept: int = 100) -> None:
        self.host, self.port, self.path = check_target(url)
        if not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} requests/s")
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be above 0 and at most {MAX_DURATION:g} s")
        if not 0 < timeout <= 60:
            raise ValueError("timeout must be above 0 and at most 60 s")
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        self.url = url
        self.rate = float(rate)
        self.duration = float(duration)
        self.timeout = float(timeout)
        self.workers = workers
        self.stop_file = Path(stop_file) if stop_file else None
        self.release_field = release_field
        self.failures_kept = failures_kept
        self._tally = _Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_slot = 0
        self._started = 0.0
        self._finished: float | None = None
        self.stopped_by: str | None = None

    # --- control ------------------------------------------------------------------------------
    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("this load generator was already started")
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, name=f"loadgen-{n}", daemon=True)
                         for n in range(self.workers)]
        self._threads.append(threading.Thread(target=self._watch, name="loadgen-watch",
                                              daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, reason: str = "stop()") -> dict:
        """Stop sending, let requests in flight finish (each is bounded by the timeout)."""
        self.request_stop(reason)
        return self.wait()

    def wait(self) -> dict:
        """Block until the load generator has stopped (at the latest when its duration ends)."""
        for thread in self._threads:
            thread.join(self.duration + self.timeout + 5)
        if self._finished is None:
            self._finished = time.monotonic()
        return self.summary()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def request_stop(self, reason: str) -> None:
        """Ask the workers to stop without waiting (safe from a signal handler)."""
        with self._lock:
            if self.stopped_by is None:
                self.stopped_by = reason
        self._stop.set()

    def _watch(self) -> None:
        deadline = self._started + self.duration
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                self.request_stop("duration")
            elif self.stop_file is not None and self.stop_file.exists():
                self.request_stop("stop file")
            else:
                self._stop.wait(min(0.1, max(0.0, deadline - time.monotonic())))

    # --- sending ------------------------------------------------------------------------------
    def _work(self) -> None:
        deadline = self._started + self.duration
        while not self._stop.is_set():
            with self._lock:
                slot = self._next_slot
                self._next_slot += 1
            due = self._started + slot / self.rate
            if due >= deadline:
                return
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self._send(time.monotonic())

    def _send(self, sent_at: float) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        status = None
        body = b""
        maintenance = False
        try:
            connection.request("GET", self.path, headers={"Connection": "close",
                                                          "User-Agent": USER_AGENT})
            response = connection.getresponse()
            status = response.status
            maintenance = status == 503 and response.getheader("Retry-After") is not None
            body = response.read(MAX_BODY)
        except TimeoutError:
            self._record(sent_at, None, b"", "timeout")
            return
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
            self._record(sent_at, status, b"", reason)
            return
        finally:
            connection.close()
        self._record(sent_at, status, body, None, maintenance=maintenance)

    def _record(self, sent_at: float, status: int | None, body: bytes,
                error: str | None, *, maintenance: bool = False) -> None:
        now = time.monotonic()
        release = self._release_of(body) if status is not None and error is None else None
        with self._lock:
            tally = self._tally
            tally.sent += 1
            if status is not None:
                tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
                tally.latencies.append(now - sent_at)
            if error is None and status is not None and 200 <= status < 300:
                tally.ok += 1
            elif error is None and status is not None and status < 500:
                tally.other_status += 1
            elif error is None and maintenance:
                tally.maintenance += 1
            else:
                tally.failed += 1
                if len(tally.failures) < self.failures_kept:
                    tally.failures.append({
                        "at": round(sent_at - self._started, 3),
                        "wall_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime()),
                        "reason": error or f"HTTP {status}",
                    })
            if release is not None:
                seen = tally.releases.setdefault(release, {
                    "count": 0, "first": round(now - self._started, 3), "last": 0.0})
                seen["count"] += 1
                seen["last"] = round(now - self._started, 3)
            elif self.release_field and status is not None and error is None:
                tally.without_release += 1

    def _release_of(self, body: bytes) -> str | None:
        if not self.release_field:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if not isinstance(document, dict) or self.release_field not in document:
            return None
        return str(document[self.release_field])

    # --- results ------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts so far (a snapshot while running, the final figures once stopped)."""
        with self._lock:
            tally = self._tally
            end = self._finished if self._finished is not None else time.monotonic()
            elapsed = max(end - self._started, 1e-9) if self._started else 0.0
            latencies = sorted(tally.latencies)
            return {
                "url": self.url,
                "target_rate": self.rate,
                "duration_limit": self.duration,
                "elapsed": round(elapsed, 3),
                "stopped_by": self.stopped_by,
                "sent": tally.sent,
                "ok": tally.ok,
                "failed": tally.failed,
                "other_status": tally.other_status,
                "maintenance": tally.maintenance,
                "statuses": dict(sorted(tally.statuses.items())),
                "achieved_rate": round(tally.sent / elapsed, 2) if elapsed else 0.0,
                "latency_ms": {
                    name: None if value is None else round(value * 1000, 2)
                    for name, value in (("p50", percentile(latencies, 0.50)),
                                        ("p95", percentile(latencies, 0.95)),
                                        ("p99", percentile(latencies, 0.99)),
                                        ("max", latencies[-1] if latencies else None))
                },
                "failures": [dict(item) for item in tally.failures],
                "releases": {name: dict(seen) for name, seen in tally.releases.items()},
                "without_release": tally.without_release,
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Bounded steady-rate HTTP load on a loopback URL (127.0.0.1, localhost, ::1).")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second (60)")
    parser.add_argument("--duration", type=float, default=120.0,
                        help=f"seconds before it stops by itself (120, at most {MAX_DURATION:g})")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout (5 s)")
    parser.add_argument("--workers", type=int, default=8, help="sending threads (8)")
    parser.add_argument("--stop-file", help="stop as soon as this file exists")
    parser.add_argument("--release-field", default="release",
                        help='JSON field counted per value ("release"); "" to not parse bodies')
    parser.add_argument("--json", dest="json_path", help="write the summary to this file")
    args = parser.parse_args(argv)
    try:
        load = LoadGenerator(args.url, rate=args.rate, duration=args.duration,
                             timeout=args.timeout, workers=args.workers,
                             stop_file=args.stop_file, release_field=args.release_field or None)
    except ValueError as exc:
        parser.error(str(exc))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: load.request_stop(
            signal.Signals(number).name))
    load.start()
    while load.running:
        time.sleep(0.2)
    summary = load.wait()
    text = json.dumps(summary, indent=2) + "\n"
    if args.json_path:
        tmp = f"{args.json_path}.tmp{os.getpid()}"
        Path(tmp).write_text(text)
        os.replace(tmp, args.json_path)
    else:
        sys.stdout.write(text)
    print(f"sent {summary['sent']} ok {summary['ok']} failed {summary['failed']} "
          f"other {summary['other_status']} rate {summary['achieved_rate']}/s "
          f"p95 {summary['latency_ms']['p95']} ms, stopped by {summary['stopped_by']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
