"""slipway-console: serve the deploy console, and manage its users.

    slipway-console serve --config FILE [--host 127.0.0.1] [--port 8765]
    slipway-console adduser NAME --role admin|deployer|viewer [--env ENV ...]
    slipway-console token NAME [--expires 30d]
    slipway-console tokens NAME
    slipway-console revoke-token ID

The password of `adduser` is read from standard input (asked twice on a terminal). Every
command takes --config FILE (default: $SLIPWAY_CONSOLE_CONFIG, then /etc/slipway/console.yml).
There is no default account: create the first admin with `adduser`.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from slipway.console.config import ConfigError, default_config_path, load_config
from slipway.console.security import ROLES


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=None,
                        help="the console's YAML configuration (default: "
                        "$SLIPWAY_CONSOLE_CONFIG, then /etc/slipway/console.yml)")
    parser = argparse.ArgumentParser(prog="slipway-console", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="serve the web console")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default 127.0.0.1; put nginx in front for anything else)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    adduser = commands.add_parser("adduser", parents=[common],
                                  help="create a user; the password is read from stdin")
    adduser.add_argument("name")
    adduser.add_argument("--role", required=True, choices=ROLES)
    adduser.add_argument("--env", action="append", default=[], metavar="ENV",
                         help="an environment a deployer may deploy (repeat for more)")
    token = commands.add_parser("token", parents=[common],
                                help="print a new API token for a user")
    token.add_argument("name")
    token.add_argument("--expires", metavar="AGE", default=None,
                       help="how long it lasts: 12h, 30d, 2w... (default: until revoked)")
    tokens = commands.add_parser("tokens", parents=[common],
                                 help="list a user's API tokens (never their secrets)")
    tokens.add_argument("name")
    revoke = commands.add_parser("revoke-token", parents=[common],
                                 help="revoke one API token (its id from `tokens`)")
    revoke.add_argument("id", type=_token_id, metavar="ID")
    return parser


def _token_id(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a token id")
    return int(text)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _print_tokens(tokens: list[dict[str, Any]]) -> None:
    print(f"{'ID':>6}  {'CREATED (UTC)':19}  {'LAST USED (UTC)':19}  EXPIRES (UTC)")
    for token in tokens:
        expires = _when(token["expires_at"]) if token["expires_at"] else "never"
        if token["expired"]:
            expires += " (expired)"
        print(f"{token['id']:>6}  {_when(token['created_at']):19}  "
              f"{_when(token['last_used_at']):19}  {expires}")


def _read_password(name: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("slipway-console: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _operator() -> str:
    """Who ran a command-line action, for the audit table."""
    return "cli:" + (os.environ.get("SUDO_USER") or getpass.getuser())


def _serve(config: Any, host: str, port: int) -> int:
    import uvicorn

    from slipway.console.app import create_app

    lock_path = config.console_db.with_name(config.console_db.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = open(lock_path, "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"slipway-console: another console serves {config.console_db} already",
              file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5, server_header=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
    except ConfigError as exc:
        print(f"slipway-console: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        return _serve(config, args.host, args.port)

    from slipway.console.db import ConsoleDB
    from slipway.console.service import Console, ConsoleError

    db = ConsoleDB(config.console_db)
    db.create()
    console = Console(config, db, runs=None)  # user management needs no runner
    try:
        if args.command == "adduser":
            password = _read_password(args.name)
            user = console.add_user(_operator(), args.name, args.role, args.env, password)
            envs = f" for {', '.join(user.environments)}" if user.environments else ""
            print(f"created {user.role} {user.name}{envs}")
        elif args.command == "token":
            print(console.new_token(_operator(), args.name, expires=args.expires)["token"])
        elif args.command == "tokens":
            _print_tokens(console.tokens(_operator(), args.name))
        else:
            revoked = console.revoke_token(_operator(), args.id)
            print(f"revoked API token {revoked['id']} of {revoked['name']}")
    except ConsoleError as exc:
        print(f"slipway-console: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
