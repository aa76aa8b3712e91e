"""``nbapps deploy nginx-config``: print the nginx config for gallery replicas behind nginx.

The affinity rule and why it holds are in :mod:`nbapps.loadbalancer`; this is its thin CLI.
"""
from __future__ import annotations

import argparse
from typing import Any

from ..loadbalancer import nginx_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy", help="configuration for running several gallery replicas",
        description="Print configuration for a deployment of several gallery replicas.")
    sub = parser.add_subparsers(dest="deploy_command", metavar="WHAT", required=True)
    nginx = sub.add_parser(
        "nginx-config", help="nginx load balancer in front of gallery replicas",
        description="Print the http{} part of an nginx config (maps, upstream, server) that "
                    "balances the given replicas: the requests of one app page (which carry "
                    "its ticket) go to one replica, gallery pages round robin, WebSockets and "
                    "streamed pages pass through. Put it in /etc/nginx/conf.d/.")
    nginx.add_argument("--replica", action="append", required=True, metavar="HOST:PORT",
                       help="a gallery replica's address (repeat for each replica)")
    nginx.add_argument("--listen", default="80", metavar="ADDR",
                       help="nginx's listen argument (default 80; e.g. '443 ssl' with your "
                            "ssl_certificate lines added)")
    nginx.add_argument("--base-url", default="/", metavar="PATH",
                       help="the galleries' --base-url (default /)")
    nginx.add_argument("--server-name", default="_", metavar="NAME",
                       help="nginx server_name (default _)")
    nginx.add_argument("--access-log", default="/var/log/nginx/nbapps.log", metavar="FILE",
                       help="access log with tickets redacted ('off': none)")
    nginx.add_argument("--read-timeout", default=60, type=int, metavar="SECONDS",
                       help="seconds without an answer before nginx gives a request to the "
                            "next replica: a hung replica's way out (default 60; app pages "
                            "and kernel sockets send something every 10 to 30 s)")
    nginx.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    log = None if args.access_log == "off" else args.access_log
    print(nginx_config(args.replica, listen=args.listen, base_url=args.base_url,
                       server_name=args.server_name, access_log=log,
                       read_timeout=args.read_timeout), end="")
    return 0
