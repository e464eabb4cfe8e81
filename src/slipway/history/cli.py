"""slipway-history: read the deploy history that the slipway.django.deploy_history callback keeps.

    slipway-history [list] [--env ENV] [--kind KIND] [--status STATUS] [--since WHEN]
                    [--limit N] [--page P]
    slipway-history show ID
    slipway-history log ID [--follow]
    slipway-history prune --older-than AGE

Every command takes --db URL (default: $SLIPWAY_HISTORY_DB, then the `db` option of the
[callback_deploy_history] section of the ansible.cfg Ansible would read here (a relative path
is relative to that file), then the SQLite file under the user's data directory) and --json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from slipway.ansible_cfg import ConfigFileError
from slipway.history import resolve_store_url
from slipway.history import store as store_module

COMMANDS = ("list", "show", "log", "prune")
HOST_COLUMNS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")


def _when(text: str) -> datetime:
    """An age ('7d', '12h') before now, or an ISO date or date-time, in UTC."""
    try:
        return store_module.utcnow() - store_module.parse_age(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an age (30m, 12h, 7d, 2w) nor an ISO date") from None


def _age(text: str) -> Any:
    try:
        return store_module.parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="URL", help="the history store: an SQLite path, "
                        "postgresql://... or mysql://... (default: see the command's help)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = argparse.ArgumentParser(prog="slipway-history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    runs = commands.add_parser("list", parents=[common], help="list runs, newest first")
    runs.add_argument("--env", help="only this environment")
    runs.add_argument("--status", choices=store_module.STATUSES, help="only runs in this status")
    runs.add_argument("--kind", choices=store_module.KINDS,
                      help="only runs of this kind (command: one-off manage.py commands)")
    runs.add_argument("--since", type=_when, metavar="WHEN",
                      help="only runs started since WHEN: an age (12h, 7d, 2w) or an ISO date "
                      "or date-time in UTC")
    runs.add_argument("--limit", type=_positive, default=20, help="runs per page (default 20)")
    runs.add_argument("--page", type=_positive, default=1, help="page number, from 1")
    runs.add_argument("--all", action="store_true", dest="include_deleted",
                      help="include pruned (soft-deleted) runs")

    show = commands.add_parser("show", parents=[common],
                               help="one run with its per-host summary and task results")
    show.add_argument("id", type=int)

    log = commands.add_parser("log", parents=[common], help="print a run's log")
    log.add_argument("id", type=int)
    log.add_argument("--follow", "-f", action="store_true",
                     help="keep printing while the run is going")

    prune = commands.add_parser(
        "prune", parents=[common],
        help="soft-delete finished runs older than AGE and clear their logs")
    prune.add_argument("--older-than", type=_age, required=True, metavar="AGE",
                       help="for example 90d or 12w")
    return parser


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def _print_json(value: Any) -> None:
    print(json.dumps(_jsonable(value), indent=2, sort_keys=True, default=str))


def format_duration(seconds: Any) -> str:
    """Seconds as 42s, 3m05s or 1h02m; "-" when unknown."""
    if seconds is None:
        return "-"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(headers: Sequence[str], rows: list[Sequence[Any]]) -> str:
    cells = [[str(cell) if cell not in (None, "") else "-" for cell in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) if cells else len(header)
              for i, header in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    return "\n".join(lines)


def _list(store: Any, args: argparse.Namespace) -> int:
    filters = {"environment": args.env, "status": args.status, "since": args.since,
               "include_deleted": args.include_deleted, "kind": args.kind}
    total = store.count_runs(**filters)
    runs = store.list_runs(**filters, limit=args.limit, offset=(args.page - 1) * args.limit)
    pages = max(1, -(-total // args.limit))
    if args.json:
        _print_json({"runs": runs, "total": total, "page": args.page, "pages": pages,
                     "limit": args.limit})
        return 0
    if not runs:
        print("no runs match")
        return 0
    print(_table(("ID", "STARTED (UTC)", "ENV", "KIND", "STATUS", "DURATION", "RELEASE",
                  "BRANCH", "COMMIT", "BY", "PLAYBOOK"),
                 [(run["id"], _time(run["started_at"]), run["environment"], run["kind"] or "",
                   run["status"],
                   format_duration(run["duration"]), run["release_id"], run["branch"],
                   (run["commit_hash"] or "")[:10], run["deployed_by"], run["playbook"])
                  for run in runs]))
    print(f"\npage {args.page} of {pages} ({total} run{'s' if total != 1 else ''})")
    return 0


def _show(store: Any, args: argparse.Namespace) -> int:
    run = store.get_run(args.id)
    if run is None:
        print(f"slipway-history: no run {args.id}", file=sys.stderr)
        return 1
    run.pop("logs", None)
    hosts = store.host_summaries(args.id)
    tasks = store.task_results(args.id)
    if args.json:
        _print_json({"run": run, "hosts": hosts, "tasks": tasks})
        return 0
    print(f"Run {run['id']} ({run['run_uuid']})")
    fields = ("status", "kind", "environment", "playbook", "command", "command_rc",
              "inventory", "host_limit", "tags",
              "skip_tags", "release_id", "app", "branch", "commit_hash", "deployed_by",
              "description", "started_at", "completed_at", "duration", "controller",
              "ansible_version", "error_message")
    for name in fields:
        value = run.get(name)
        if name == "duration":
            value = format_duration(value)
        elif isinstance(value, datetime):
            value = _time(value) + " UTC"
        if value not in (None, ""):
            print(f"  {name:<16} {value}")
    print("\nHosts")
    print(_table(("HOST", *(c.upper() for c in HOST_COLUMNS)),
                 [(h["host"], *(h[c] for c in HOST_COLUMNS)) for h in hosts]) if hosts
          else "  (none recorded)")
    print("\nTasks")
    print(_table(("HOST", "STATUS", "CHANGED", "MS", "PLAY", "TASK", "MESSAGE"),
                 [(t["host"], t["status"], "yes" if t["changed"] else "no", t["duration_ms"],
                   t["play"], t["task"], (t["message"] or "").splitlines()[0][:80]
                   if t["message"] else "") for t in tasks]) if tasks
          else "  (none recorded)")
    if run.get("kind") == "command":
        print("\nOutput of the command")
        print(run.get("command_output") or "  (none recorded)")
    return 0


def _log(store: Any, args: argparse.Namespace) -> int:
    text, offset, status = store.read_log(args.id)
    if status is None:
        print(f"slipway-history: no run {args.id}", file=sys.stderr)
        return 1
    if args.json:
        _print_json({"id": args.id, "status": status, "logs": text})
        return 0
    sys.stdout.write(text)
    while args.follow and status == "running":
        sys.stdout.flush()
        time.sleep(1)
        text, offset, status = store.read_log(args.id, offset)
        sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def _prune(store: Any, args: argparse.Namespace) -> int:
    count = store.prune(args.older_than)
    if args.json:
        _print_json({"pruned": count})
    else:
        print(f"pruned {count} run{'s' if count != 1 else ''}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "list")
    args = build_parser().parse_args(argv)
    handlers = {"list": _list, "show": _show, "log": _log, "prune": _prune}
    try:
        with store_module.open_store(resolve_store_url(args.db)) as store:
            return handlers[args.command](store, args)
    except (store_module.HistoryStoreError, ConfigFileError) as exc:
        print(f"slipway-history: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away; do not let the interpreter complain on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
