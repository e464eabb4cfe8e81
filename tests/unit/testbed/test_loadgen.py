"""The load generator against a real local HTTP server: 200, then 500, then a closed port."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import loadgen
import pytest

LOADGEN = Path(loadgen.__file__)


class Backend:
    """A local server whose answer the test switches: "ok" (200 JSON), "error" (500), "slow"."""

    def __init__(self) -> None:
        self.mode = "ok"
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if backend.mode == "slow":
                    time.sleep(2)
                if backend.mode == "ok":
                    status, body = 200, {"status": "ok", "release": "r1"}
                elif backend.mode == "missing":
                    status, body = 404, {"detail": "not found"}
                elif backend.mode in ("maintenance", "unavailable"):
                    status, body = 503, {"status": "down"}
                else:
                    status, body = 500, {"status": "broken"}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if backend.mode == "maintenance":
                    self.send_header("Retry-After", "300")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/health/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.closed = False

    def close(self) -> None:
        """Stop listening: later connections are refused."""
        if not self.closed:
            self.server.shutdown()
            self.server.server_close()
            self.closed = True


@pytest.fixture
def backend():
    server = Backend()
    yield server
    server.close()


def wait_for(condition, limit: float = 30.0) -> None:
    """Poll condition() until it holds; fail (never hang) after a generous limit."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_counts_ok_then_5xx_then_refused_connections(backend):
    load = loadgen.LoadGenerator(backend.url, rate=100, duration=60, timeout=2, workers=4,
                                 failures_kept=1000).start()
    try:
        wait_for(lambda: load.summary()["ok"] >= 20)
        backend.mode = "error"
        wait_for(lambda: load.summary()["failed"] >= 10)
        backend.close()
        wait_for(lambda: sum("Refused" in f["reason"] for f in load.summary()["failures"]) >= 5)
    finally:
        summary = load.stop()

    assert summary["stopped_by"] == "stop()"
    assert summary["ok"] >= 20
    assert summary["sent"] == summary["ok"] + summary["failed"] + summary["other_status"]
    assert summary["other_status"] == 0 and summary["maintenance"] == 0
    reasons = [failure["reason"] for failure in summary["failures"]]
    assert len(reasons) == summary["failed"]
    assert reasons.count("HTTP 500") == summary["statuses"]["500"] >= 10
    refused = [reason for reason in reasons if reason.startswith("ConnectionRefusedError")]
    assert len(refused) >= 5
    # A request in flight while the port closes may also end in a reset: a failure all the same.
    others = [r for r in reasons if r != "HTTP 500" and not r.startswith("ConnectionRefused")]
    assert all(r.startswith(("ConnectionResetError", "RemoteDisconnected")) for r in others), others
    # The failures come in the order they happened: the 500s before the closed port.
    assert reasons.index(refused[0]) > max(i for i, r in enumerate(reasons) if r == "HTTP 500")
    assert summary["statuses"]["200"] == summary["ok"]
    assert summary["releases"]["r1"]["count"] == summary["ok"]
    assert summary["without_release"] == summary["statuses"]["500"]
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]


def test_other_statuses_are_counted_apart_from_failures(backend):
    backend.mode = "missing"
    load = loadgen.LoadGenerator(backend.url, rate=50, duration=30, workers=2).start()
    try:
        wait_for(lambda: load.summary()["other_status"] >= 5)
    finally:
        summary = load.stop()
    assert summary["failed"] == 0 and summary["ok"] == 0
    assert summary["statuses"] == {"404": summary["other_status"]}
    assert summary["releases"] == {}


def test_a_maintenance_page_is_counted_apart_and_a_bare_503_is_a_failure(backend):
    backend.mode = "maintenance"
    load = loadgen.LoadGenerator(backend.url, rate=50, duration=30, workers=2).start()
    try:
        wait_for(lambda: load.summary()["maintenance"] >= 5)
        backend.mode = "unavailable"
        wait_for(lambda: load.summary()["failed"] >= 5)
    finally:
        summary = load.stop()
    assert summary["ok"] == 0 and summary["other_status"] == 0
    assert summary["sent"] == summary["maintenance"] + summary["failed"]
    assert summary["statuses"] == {"503": summary["sent"]}
    assert {failure["reason"] for failure in summary["failures"]} == {"HTTP 503"}


def test_a_slow_answer_is_a_timeout_failure(backend):
    backend.mode = "slow"
    load = loadgen.LoadGenerator(backend.url, rate=10, duration=30, timeout=0.3,
                                 workers=2).start()
    try:
        wait_for(lambda: load.summary()["failed"] >= 2)
    finally:
        summary = load.stop()
    assert summary["ok"] == 0
    assert {failure["reason"] for failure in summary["failures"]} == {"timeout"}


def test_stops_by_itself_when_its_duration_is_over(backend):
    load = loadgen.LoadGenerator(backend.url, rate=20, duration=1, workers=2).start()
    summary = load.wait()
    assert summary["stopped_by"] == "duration"
    assert not load.running
    # Never more requests than the schedule allows: rate x duration.
    assert 0 < summary["sent"] <= 20
    assert summary["failed"] == 0


def test_stops_when_the_stop_file_appears(backend, tmp_path):
    stop_file = tmp_path / "stop"
    load = loadgen.LoadGenerator(backend.url, rate=20, duration=60, stop_file=stop_file).start()
    wait_for(lambda: load.summary()["ok"] >= 3)
    stop_file.touch()
    wait_for(lambda: not load.running)
    assert load.wait()["stopped_by"] == "stop file"


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/health/",
    "http://192.168.1.1:8080/",
    "http://example.com/",
    "http://127.0.0.2/",
    "https://127.0.0.1/",
    "ftp://localhost/",
])
def test_refuses_targets_off_this_machines_loopback(url):
    with pytest.raises(ValueError):
        loadgen.LoadGenerator(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/health/", "http://localhost/",
                                 "http://[::1]:9000/x?y=1"])
def test_accepts_loopback_targets(url):
    loadgen.LoadGenerator(url)


@pytest.mark.parametrize("options", [
    {"duration": 0}, {"duration": loadgen.MAX_DURATION + 1}, {"rate": 0},
    {"rate": loadgen.MAX_RATE + 1}, {"workers": 0}, {"timeout": 0},
])
def test_refuses_unbounded_or_empty_settings(options):
    with pytest.raises(ValueError):
        loadgen.LoadGenerator("http://127.0.0.1/", **options)


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(LOADGEN), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_cli_stops_on_its_stop_file_and_writes_the_summary(backend, tmp_path):
    out, stop_file = tmp_path / "out.json", tmp_path / "stop"
    process = run_cli(backend.url, "--rate", "30", "--duration", "60", "--json", str(out),
                      "--stop-file", str(stop_file))
    time.sleep(1)
    stop_file.touch()
    stderr = process.communicate(timeout=30)[1]
    assert process.returncode == 0, stderr
    summary = json.loads(out.read_text())
    assert summary["stopped_by"] == "stop file"
    assert summary["ok"] > 0 and summary["failed"] == 0
    assert "sent" in stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_on_a_signal_and_writes_the_summary(backend, tmp_path, signum):
    out = tmp_path / "out.json"
    process = run_cli(backend.url, "--rate", "30", "--duration", "60", "--json", str(out))
    time.sleep(1)
    process.send_signal(signum)
    stderr = process.communicate(timeout=30)[1]
    assert process.returncode == 0, stderr
    assert json.loads(out.read_text())["stopped_by"] == signal.Signals(signum).name


def test_cli_refuses_a_remote_target():
    process = run_cli("http://10.1.2.3/health/", "--duration", "1")
    stderr = process.communicate(timeout=30)[1]
    assert process.returncode == 2
    assert "only targets 127.0.0.1" in stderr
