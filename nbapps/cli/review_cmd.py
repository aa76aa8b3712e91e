"""``nbapps review``: the review workflow from the command line, over the gallery's API.

    nbapps review list [--state STATE] [--mine]        the queue (submitted) by default
    nbapps review show ID
    nbapps review approve ID [--comment TEXT]
    nbapps review request-changes ID --comment TEXT     what to change (required: NBA350)
    nbapps review reject ID --comment TEXT              why (required: NBA350)
    nbapps review withdraw ID [--comment TEXT]          your own submission
    nbapps review rollback SLUG [--comment TEXT]        previous live version back

The gallery and token come from ``--gallery``/``--token``, ``NBAPPS_GALLERY``/``NBAPPS_TOKEN`` or
``~/.config/nbapps/config.toml``. ``--format json`` prints the API's JSON.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .client_opts import add_client_options, client_from, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("review", help="list, show and decide on submissions",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True

    p = sub.add_parser("list", help="submissions (the review queue by default)")
    p.add_argument("--state", default=None,
                   help="submitted (default) | approved | changes_requested | rejected | "
                        "withdrawn | all")
    p.add_argument("--mine", action="store_true", help="only my own submissions")
    add_client_options(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="one submission")
    p.add_argument("id", type=int)
    add_client_options(p)
    p.set_defaults(handler=cmd_show)

    for name, decision, text, comment_help in (
            ("approve", "approve", "approve (the version goes live)", "comment for the author"),
            ("reject", "reject", "reject (final)",
             "why, for the author (required: the gallery refuses a reject without one)"),
            ("request-changes", "request_changes", "send back to the author",
             "what to change, for the author (required)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id", type=int)
        p.add_argument("--comment", "-m", default="", help=comment_help)
        add_client_options(p)
        p.set_defaults(handler=cmd_decide, decision=decision)

    p = sub.add_parser("withdraw", help="withdraw your own submission")
    p.add_argument("id", type=int)
    p.add_argument("--comment", "-m", default="")
    add_client_options(p)
    p.set_defaults(handler=cmd_withdraw)

    p = sub.add_parser("rollback", help="make an app's previous live version live again")
    p.add_argument("slug")
    p.add_argument("--comment", "-m", default="")
    add_client_options(p)
    p.set_defaults(handler=cmd_rollback)


def _line(v: dict[str, Any]) -> str:
    live = " (live)" if v.get("live") else ""
    return (f"#{v['id']:<5} {v['state']:<18}{live} {v['app']} v{v['number']}  "
            f"{v['title']}  by {v['submitter']}  {str(v.get('created_at', ''))[:16]}")


def cmd_list(args: argparse.Namespace) -> int:
    state = None if args.state == "all" else (args.state or
                                              (None if args.mine else "submitted"))
    with client_from(args) as client:
        items = client.submissions(state=state, mine=args.mine)
    if args.format == "json":
        print_json(items)
        return 0
    if not items:
        sys.stderr.write("nothing to show\n")
    for v in items:
        sys.stdout.write(_line(v) + "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        v = client.submission(args.id)
    if args.format == "json":
        print_json(v)
        return 0
    out = [_line(v), f"  url:     {v.get('url', '')}", f"  bundle:  {v['sha256']}",
           f"  {v.get('description', '')}"]
    if v.get("decided_by"):
        out.append(f"  decided by {v['decided_by']} at {v.get('decided_at')}: "
                   f"{v.get('comment') or ''}")
    for r in v.get("reviews", []):
        out.append(f"  - {r['at'][:16]} {r['actor']} {r['action']}"
                   + (f": {r['comment']}" if r.get("comment") else ""))
    for c in v.get("comments", []):
        out.append(f"  - {c['at'][:16]} {c['author']} commented: {c['comment']}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        v = client.decide(args.id, args.decision, args.comment)
    if args.format == "json":
        print_json(v)
    else:
        sys.stdout.write(f"#{v['id']} is now {v['state'].replace('_', ' ')}"
                         + (" (live)" if v.get("live") else "") + "\n")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        v = client.withdraw(args.id, args.comment)
    if args.format == "json":
        print_json(v)
    else:
        sys.stdout.write(f"#{v['id']} withdrawn\n")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        detail = client.rollback(args.slug, args.comment)
    if args.format == "json":
        print_json(detail)
    else:
        live = detail.get("live") or {}
        sys.stdout.write(f"{args.slug}: version {live.get('number')} is live again\n")
    return 0
