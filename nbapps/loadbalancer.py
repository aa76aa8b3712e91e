"""nginx in front of several gallery replicas: the affinity rule, as a generated config.

Replicas share the catalog (PostgreSQL), the bundle store and the cookie secret, so any replica
serves any gallery page, API call or new app page. What one replica alone holds are the kernels
of the app pages it served (its runners are its own child processes). Every request of one app
page carries that page's **app ticket** in its path (:mod:`nbapps.server.app_tickets`)::

    <base>apps/<slug>/~t/<ticket>/...   the page, its assets, its kernel model, the kernel
                                        WebSocket and the unload beacon (previews: ~v<id>)

so the load balancer hashes on the ticket and every request of a page reaches the replica that
rendered it (the one owning its kernel). The rule:

1. a path with ``apps/<slug>/~t/<ticket>/``: the key is the ticket;
2. any other path under ``<base>apps/`` (scripts reading ``/apps/<slug>/`` with a session cookie
   or an API token, then talking to its kernel): the key is the client's credential, i.e. the
   ``nbapps-session`` cookie and the ``Authorization`` header, with the client address;
3. everything else (gallery pages, API, static files, login): no key, i.e. round robin.

The hash is consistent (``hash ... consistent``): a replica that dies moves only its own keys to
the others (its open app pages lose their kernels, nothing else), and nginx retries a refused
connection on the next replica, so a reload of such a page is served by another replica (which
starts the app's runner if it has none).
One ticket covers all pages of one viewer and app for a quarter of ``app_ticket_lifetime``
(:meth:`AppTickets.issue`), so one viewer's pages of one app share a replica; pages spread over
replicas by viewer and app. When the dead replica comes back (or replicas are added, or rolled
over), keys move to it while their pages are open elsewhere: it forwards those pages' kernel
requests to the replica that owns the kernel (:mod:`nbapps.server.peers`), so they keep working;
their asset requests it serves from its own runner. Each replica starts
its own runner for an app its viewers open there (memory per app times the replicas in use;
idle runners stop after ``idle_timeout``). The app frame's start-up progress
(``<base>api/apps/<slug>/status``) carries no ticket, so it goes round robin and may describe
another replica's runner during a cold start: cosmetic, the iframe shows its own replica's
waiting page until the app is there.

``nginx_config`` writes the ``http {}`` part (maps, upstream, server); ``nbapps deploy
nginx-config`` prints it. Tickets are credentials (one app, one viewer, until they expire), so the
access log format it defines (``nbapps``) writes request paths with the ticket replaced by ``...``
(the gallery's own log redacts them too); nginx's error log still names full URLs of requests that
failed upstream: keep it private.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from .errors import UsageError

SESSION_COOKIE = "nbapps-session"  # nbapps.server.identity.SESSION_COOKIE (no server import)


def replica_address(replica: str) -> str:
    """``http://10.0.0.5:8866`` or ``10.0.0.5:8866`` → ``10.0.0.5:8866`` (an nginx ``server``)."""
    text = replica.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.username:
        raise UsageError(f"replica {replica!r}: give host:port or http://host:port (the "
                         "gallery's own address, without a path: nginx keeps the base URL)")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise UsageError(f"replica {replica!r}: {exc}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _base(base_url: str) -> str:
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    if not re.fullmatch(r"[A-Za-z0-9._~/-]+", base):
        raise UsageError(f"base URL {base_url!r}: letters, digits, '.', '_', '~', '-', '/' only")
    return base


def nginx_config(replicas: Sequence[str], *, listen: str = "80", base_url: str = "/",
                 server_name: str = "_", access_log: str | None = "/var/log/nginx/nbapps.log",
                 fail_timeout: int = 10, upstream: str = "nbapps_replicas",
                 read_timeout: int = 60) -> str:
    """The ``http {}`` context part of an nginx config balancing ``replicas`` (the galleries'
    ``host:port``) with the affinity rule of this module; ``listen`` is nginx's ``listen``
    argument (add TLS there); ``base_url`` the galleries' ``--base-url``.

    ``read_timeout``: seconds nginx waits for a replica to send anything before it gives the
    request to the next replica (``proxy_next_upstream timeout``). It is what takes a hung
    replica (accepting connections, never answering) out of the way: open source nginx has no
    active health checks. 60 s is safe for nbapps: an app page that renders sends a keep-alive
    chunk every ``http_keep_alive_timeout`` (10 s), kernel WebSockets are pinged every 30 s, and
    no gallery request holds its answer longer (the app frame's start hold is 20 s)."""
    if int(read_timeout) < 1:
        raise UsageError("the read timeout is a number of seconds (at least 1)")
    servers = [replica_address(r) for r in replicas]
    if not servers:
        raise UsageError("give at least one replica (--replica host:port)")
    base = re.escape(_base(base_url))
    log_line = (f"access_log {access_log} nbapps;" if access_log else "access_log off;")
    upstream_servers = "\n".join(
        f"    server {s} max_fails=1 fail_timeout={int(fail_timeout)}s;" for s in servers)
    return f"""\
# nbapps gallery replicas behind nginx (generated by `nbapps deploy nginx-config`).
# Affinity: the requests of one app page carry its ticket (<base>apps/<slug>/~t/<ticket>/...)
# and are hashed on it, so they reach the replica that owns the page's kernel; other /apps/
# requests are hashed on the client's credential; gallery pages and the API are round robin.

map $uri $nbapps_ticket {{
    default "";
    "~^{base}apps/[^/]+/~t/(?<nbapps_t>[^/]+)" $nbapps_t;
}}
map $http_cookie $nbapps_session {{
    default "";
    "~(?:^|;)\\s*{SESSION_COOKIE}=(?<nbapps_s>[^;\\s]+)" $nbapps_s;
}}
map "$nbapps_ticket|$uri" $nbapps_affinity {{
    default "";
    "~^(?<nbapps_k>[^|]+)\\|" "t:$nbapps_k";
    "~^\\|{base}apps/" "c:$nbapps_session|$http_authorization|$remote_addr";
}}
# WebSocket upgrades pass through; other requests keep the upstream connection alive
map $http_upgrade $nbapps_connection {{
    default upgrade;
    "" "";
}}
# request paths with app tickets (credentials) replaced by "..."
map $request_uri $nbapps_log_uri {{
    default $request_uri;
    "~^(?<nbapps_a>.*/~t/)[^/?]+(?<nbapps_b>.*)$" "$nbapps_a...$nbapps_b";
}}
log_format nbapps '$remote_addr [$time_iso8601] "$request_method $nbapps_log_uri" '
                  '$status $body_bytes_sent $request_time upstream=$upstream_addr '
                  'upstream_status=$upstream_status';

upstream {upstream} {{
    hash $nbapps_affinity consistent;
{upstream_servers}
    keepalive 32;
}}

server {{
    listen {listen};
    server_name {server_name};
    {log_line}

    # the gallery enforces its own upload limit (max_upload_bytes): stream bodies to it
    client_max_body_size 0;
    proxy_request_buffering off;

    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $nbapps_connection;
        # the host with its port: the gallery compares it with Origin (forms, app WebSockets)
        proxy_set_header Host $http_host;
        # appended, never replaced: set c.NbappsServer.xheaders = True and trusted_proxy_hops
        # to the number of proxies in front of the gallery (this one included)
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # app pages stream while their notebook runs (keep-alive chunks); kernels are WebSockets
        proxy_buffering off;
        # a hung replica: after this long without a byte the next replica gets the request
        proxy_read_timeout {int(read_timeout)}s;
        proxy_send_timeout 300s;
        proxy_redirect off;
        # a replica that refuses, drops or does not answer: the next one serves the request
        proxy_next_upstream error timeout;
        proxy_connect_timeout 5s;
    }}
}}
"""
