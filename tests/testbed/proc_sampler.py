"""Record every distinct process command line on this machine until told to stop.

    python3 proc_sampler.py OUT --stop-file PATH [--interval 0.02] [--max-seconds 1800]

Scans /proc/*/cmdline every INTERVAL seconds and appends each command line it has not seen
before to OUT, one JSON object a line: {"pid": ..., "uid": ..., "argv": [...]}. When the stop
file appears, SIGTERM or SIGINT arrives, or MAX_SECONDS have passed, it appends
{"done": true, "stopped_by": "stop file" | "signal" | "time limit", "scans": N, "seconds": S}
and exits: it never runs forever.

Run as root inside a test host (`podman exec -d HOST python3 proc_sampler.py ...`) to see every
user's processes, as any local user can: a test then reads OUT and looks for secrets in it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

MAX_SECONDS = 3600.0
MIN_INTERVAL = 0.005


def read_command_lines() -> dict[int, bytes]:
    """The raw command line of every process that has one (kernel threads have none)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    raw = handle.read()
            except OSError:  # the process ended while being read
                continue
            if raw:
                found[int(name)] = raw
    return found


def owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def sample(out: Path, stop_file: Path, interval: float, max_seconds: float) -> str:
    """Scan until stopped; what stopped it."""
    signalled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: signalled.append(True))
    started = time.monotonic()

    def stop_reason() -> str | None:
        if signalled:
            return "signal"
        if stop_file.exists():
            return "stop file"
        if time.monotonic() - started >= max_seconds:
            return "time limit"
        return None

    seen: set[bytes] = set()
    scans = 0
    with out.open("a", encoding="utf-8") as log:
        while True:
            for pid, raw in read_command_lines().items():
                if raw not in seen:
                    seen.add(raw)
                    argv = [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]
                    log.write(json.dumps({"pid": pid, "uid": owner(pid), "argv": argv}) + "\n")
            log.flush()
            scans += 1
            stopped_by = stop_reason()
            if stopped_by:
                break
            time.sleep(interval)
        log.write(json.dumps({"done": True, "stopped_by": stopped_by, "scans": scans,
                              "seconds": round(time.monotonic() - started, 1)}) + "\n")
    return stopped_by


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON lines file to append to")
    parser.add_argument("--stop-file", type=Path, required=True,
                        help="stop when this file exists")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between scans")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help=f"stop after this long (at most {MAX_SECONDS:.0f})")
    args = parser.parse_args(argv)
    if not 0 < args.max_seconds <= MAX_SECONDS:
        parser.error(f"--max-seconds must be in (0, {MAX_SECONDS:.0f}]")
    sample(args.out, args.stop_file, max(args.interval, MIN_INTERVAL), args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
