"""``nbapps user``: manage gallery accounts directly in the catalog of a data dir.

    nbapps user add NAME --role ROLE [--password-stdin]   prints a generated password
    nbapps user list [--format json]
    nbapps user set-role NAME ROLE
    nbapps user passwd NAME [--password-stdin]            prints a generated password
    nbapps user token NAME [--label TEXT | --list | --revoke PREFIX]
    nbapps user disable NAME [--enable]

Every command takes ``--data-dir`` and ``--db-url``; the data dir is found as by every command
(flag, ``$NBAPPS_DATA_DIR``, ``jupyter_nbapps_config.py``, default: see
:mod:`nbapps.datadir_lookup`). Only ``add`` may create a catalog; the others say which data dir
they looked in when the catalog or the user is missing. Secrets (a generated password, a new
token) are the only thing written to stdout, so ``TOKEN=$(nbapps user token ana)`` works;
messages go to stderr. Each change is an audit event by actor ``cli:<os user>``.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..accounts import Role, generate_password
from ..catalog import Catalog
from ..errors import NotFound, UsageError
from .catalog_opts import add_catalog_options, open_cli_catalog


def cli_actor() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{name}"


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    add_catalog_options(common)

    parser = subparsers.add_parser("user", help="manage gallery users, roles and API tokens",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="user_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True
    roles = [r.value for r in Role]

    p = sub.add_parser("add", parents=[common], help="create a user")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=roles)
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (else one is generated "
                   "and printed)")
    p.set_defaults(handler=cmd_add)

    p = sub.add_parser("list", parents=[common], help="list users")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("set-role", parents=[common], help="change a user's role")
    p.add_argument("name")
    p.add_argument("role", choices=roles)
    p.set_defaults(handler=cmd_set_role)

    p = sub.add_parser("passwd", parents=[common], help="set a new password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from stdin (else one is generated and printed)")
    p.set_defaults(handler=cmd_passwd)

    p = sub.add_parser("token", parents=[common],
                       help="create (default), list or revoke API tokens")
    p.add_argument("name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the user's tokens")
    group.add_argument("--revoke", metavar="PREFIX", help="revoke the token with this prefix")
    p.add_argument("--label", default="", help="a note stored with a new token")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="output of --list")
    p.set_defaults(handler=cmd_token)

    p = sub.add_parser("disable", parents=[common], help="disable a user (or --enable)")
    p.add_argument("name")
    p.add_argument("--enable", action="store_true", help="re-enable instead")
    p.set_defaults(handler=cmd_disable)


@contextmanager
def _open(args: argparse.Namespace, *, create: bool = False) -> Iterator[Catalog]:
    """The catalog (created only when ``create``); a missing user's NBA302 names the data dir."""
    cat, location = open_cli_catalog(args, create=create)
    try:
        yield cat
    except NotFound as exc:
        raise location.missing_user(exc) from None
    finally:
        cat.close()


def _read_password_stdin() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    if not password:
        raise UsageError("no password on stdin", code="NBA100")
    return password


def _err(msg: str) -> None:
    sys.stderr.write(msg + "\n")


def cmd_add(args: argparse.Namespace) -> int:
    password = _read_password_stdin() if args.password_stdin else generate_password()
    with _open(args, create=True) as cat:
        user = cat.create_user(args.name, args.role, password, actor=cli_actor())
    _err(f"created user {user.name} ({user.role.value})")
    if not args.password_stdin:
        _err(f"password for {user.name} (shown once):")
        print(password)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args) as cat:
        users = cat.list_users()
    if args.format == "json":
        print(json.dumps([u.to_dict() for u in users], indent=2))
        return 0
    rows = [("NAME", "ROLE", "STATUS", "CREATED")]
    rows += [(u.name, u.role.value, "disabled" if u.disabled else "active",
              u.created_at.strftime("%Y-%m-%d %H:%M")) for u in users]
    _print_table(rows)
    return 0


def cmd_set_role(args: argparse.Namespace) -> int:
    with _open(args) as cat:
        user = cat.set_role(args.name, args.role, actor=cli_actor())
    _err(f"{user.name} is now {user.role.value}")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    password = _read_password_stdin() if args.password_stdin else generate_password()
    with _open(args) as cat:
        cat.set_password(args.name, password, actor=cli_actor())
    _err(f"password of {args.name} changed")
    if not args.password_stdin:
        _err(f"new password for {args.name} (shown once):")
        print(password)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    with _open(args) as cat:
        if args.list:
            tokens = cat.list_tokens(args.name)
            if args.format == "json":
                print(json.dumps([t.to_dict() for t in tokens], indent=2))
                return 0
            rows = [("PREFIX", "STATUS", "CREATED", "LAST USED", "LABEL")]
            rows += [(t.prefix, "active" if t.active else "revoked",
                      t.created_at.strftime("%Y-%m-%d %H:%M"),
                      t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "-",
                      t.label) for t in tokens]
            _print_table(rows)
            return 0
        if args.revoke:
            info = cat.revoke_token(args.name, args.revoke, actor=cli_actor())
            _err(f"revoked token {info.prefix} of {args.name}")
            return 0
        token, info = cat.create_token(args.name, actor=cli_actor(), label=args.label)
    _err(f"new API token {info.prefix}... for {args.name} (shown once)")
    print(token)
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    with _open(args) as cat:
        user = cat.disable_user(args.name, actor=cli_actor(), disabled=not args.enable)
    _err(f"{user.name} is {'disabled' if user.disabled else 'enabled'}")
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
