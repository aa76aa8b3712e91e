"""The client address behind reverse proxies: only the configured number of proxy hops is believed.

With ``xheaders`` on, tornado takes the client address from ``X-Real-Ip`` when the request has one,
else from the last ``X-Forwarded-For`` entry. Both are whatever the client sent unless the proxy
in front overwrites them, so a script that rotates them would get a fresh login limit with every
request. Here, with ``xheaders`` on, the address is the ``X-Forwarded-For`` entry appended by the
outermost of ``trusted_proxy_hops`` proxies: each proxy appends the address it got the request
from (nginx: ``proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for``), so with one proxy
(the default) that is the last entry, with two (a load balancer, then nginx) the one before it.
Entries the client put in front of those, and any ``X-Real-Ip`` it sent, are ignored. A chain
shorter than the configured hops, or an entry that is not an IP address, gives the address of
the connection's peer (the proxy itself): a misconfiguration makes clients share one address, it
never lets them choose one.

The gallery must then be reachable only through those proxies (it listens on 127.0.0.1 by
default), or a client could talk to it directly and write the last entry itself.
``X-Forwarded-Proto`` / ``X-Scheme`` keep tornado's meaning (the last value).
"""
from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from tornado import httpserver, httputil, netutil


def client_address(forwarded_for: str | None, peer: str, hops: int) -> str:
    """The client address of a request that came from ``peer`` with ``X-Forwarded-For:
    forwarded_for``, believing ``hops`` proxies (0: the peer itself)."""
    if hops <= 0 or not forwarded_for:
        return peer
    entries = [entry.strip() for entry in forwarded_for.split(",")]
    if len(entries) < hops:
        return peer
    candidate = _without_port(entries[-hops])
    return candidate if netutil.is_valid_ip(candidate) else peer


def _without_port(entry: str) -> str:
    """``1.2.3.4:5678`` → ``1.2.3.4``, ``[::1]:80`` → ``::1`` (some proxies add the port)."""
    if entry.startswith("[") and "]" in entry:
        return entry[1:entry.index("]")]
    if entry.count(":") == 1:
        return entry.split(":", 1)[0]
    return entry


class _TrustedHops(httputil.HTTPMessageDelegate):
    """Rewrites ``X-Real-Ip`` to the believed address before tornado's xheaders read it."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, connection: Any, hops: int
                 ) -> None:
        self.delegate = delegate
        self.connection = connection
        self.hops = hops

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        context = getattr(self.connection, "context", None)
        peer = str(getattr(context, "remote_ip", "") or "")
        address = client_address(headers.get("X-Forwarded-For"), peer, self.hops)
        if "X-Real-Ip" in headers:
            del headers["X-Real-Ip"]
        if address:
            headers["X-Real-Ip"] = address  # tornado's xheaders take this one first
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class ForwardedHTTPServer(httpserver.HTTPServer):
    """tornado's ``HTTPServer`` believing only ``trusted_proxy_hops`` proxies (with xheaders)."""

    trusted_proxy_hops = 1

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection
                      ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        if not self.xheaders:
            return delegate
        return _TrustedHops(delegate, request_conn, self.trusted_proxy_hops)


def make_http_server(app: Any, *, xheaders: bool, trusted_proxy_hops: int, **kwargs: Any
                     ) -> httpserver.HTTPServer:
    server = ForwardedHTTPServer(app, xheaders=xheaders, **kwargs)
    server.trusted_proxy_hops = max(0, int(trusted_proxy_hops))
    return server
