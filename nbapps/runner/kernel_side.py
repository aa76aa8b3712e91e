"""Functions that run inside an app's kernel (their source is put into a hidden cell).

The custom-parameters variant (:mod:`.notebook_variants`) pre-runs the cells above the
``parameters`` cell in a preheated kernel, then waits here for the request that takes the kernel.
Voilà's own :func:`voila.utils.wait_for_request` does the same, but importing ``voila.utils`` in a
kernel imports jupyter_server and jupyterlab_server (about 0.7 s on an idle 2-core machine, over
10 s on a busy one), which delays the moment the kernel is ready. So this module speaks Voilà's
small request-info protocol with the standard library only: one WebSocket connection to
``<server_url>voila/query/<kernel id>`` on the runner, on which Voilà sends the request's
CGI-style variables (``QUERY_STRING`` among them) as one JSON text message.

Rules for this file: standard library only, imports inside the functions, every top-level name
starts with ``_nbapps_`` (the cell deletes them after use), no module-level code but definitions.
"""
from __future__ import annotations


def _nbapps_ws_first_text(host: str, port: int, path: str) -> str:
    """Open a WebSocket to ``host:port/path`` and return the first text message (RFC 6455)."""
    import base64
    import os
    import socket
    import struct

    sock = socket.create_connection((host, port), timeout=30)
    buf = b""

    def read(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("nbapps: the runner closed the request-info connection")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    def send(opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
        sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    try:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii"))
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("nbapps: the runner closed the connection")
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"nbapps: request-info handshake refused: {status!r}")
        sock.settimeout(None)  # a pooled kernel waits as long as no viewer comes
        message = b""
        while True:
            b1, b2 = read(2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                length = struct.unpack("!H", read(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", read(8))[0]
            mask = read(4) if b2 & 0x80 else b""
            payload = read(length)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode == 0x9:  # ping (keep-alive from the server): answer it
                send(0xA, payload[:125])
            elif opcode == 0x8:
                raise ConnectionError("nbapps: the runner closed the request-info connection")
            elif opcode in (0x0, 0x1):
                message += payload
                if b1 & 0x80:
                    try:  # noqa: SIM105 (kernel side: no imports beyond need)
                        send(0x8, b"\x03\xe8")  # normal closure
                    except OSError:
                        pass
                    return message.decode("utf-8")
    finally:
        sock.close()


def _nbapps_request_query() -> str:
    """The query string of the request this kernel serves (waits for it in a preheated kernel)."""
    import json
    import os

    if os.environ.get("VOILA_PREHEAT", "False") != "True":
        return os.environ.get("QUERY_STRING", "")  # a kernel started for this request
    host = os.environ.get("VOILA_APP_IP", "127.0.0.1")
    port = int(os.environ.get("VOILA_APP_PORT", "8866"))
    base = os.environ.get("VOILA_WS_BASE_URL") or os.environ.get("VOILA_SERVER_URL", "/")
    kernel_id = os.environ["VOILA_KERNEL_ID"]
    info = json.loads(_nbapps_ws_first_text(host, port, f"{base}voila/query/{kernel_id}"))
    query = str(info.get("QUERY_STRING", ""))
    os.environ["QUERY_STRING"] = query
    return query


def _nbapps_parameters(query: str, contract: list, key: str) -> dict:  # type: ignore[type-arg]
    """Decode the proxy's encoded values from ``query`` and check them against ``contract``."""
    import base64
    import json
    import math
    import urllib.parse

    parsed = urllib.parse.parse_qs(query, keep_blank_values=True)
    raw = parsed.get(key, [])
    if len(raw) != 1 or set(parsed) != {key}:
        raise ValueError("nbapps: this page was requested without its parameters")
    text = raw[0] + "=" * (-len(raw[0]) % 4)
    values = json.loads(base64.urlsafe_b64decode(text.encode("ascii")).decode("utf-8"))
    if not isinstance(values, dict):
        raise ValueError("nbapps: the parameters are not a mapping")
    kinds = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,),
             "list": (list,), "dict": (dict,)}

    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def same(a: object, b: object) -> bool:
        return (number(a) and number(b) and a == b) or (type(a) is type(b) and a == b)

    spec = {p["name"]: p for p in contract}
    out = {}
    for name, value in values.items():
        p = spec.get(name)
        if p is None:
            raise ValueError(f"nbapps: unknown parameter {name!r}")
        if value is None and p.get("default") is None:
            out[name] = value
            continue
        kind = p.get("type")
        if p.get("default") is not None and kind in kinds:
            if not isinstance(value, kinds[kind]) or (kind != "bool" and isinstance(value, bool)):
                raise ValueError(f"nbapps: parameter {name!r} must be a {kind}")
            if kind == "float":
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(f"nbapps: parameter {name!r} must be a finite number")
        if p.get("choices") is not None and not any(same(value, c) for c in p["choices"]):
            raise ValueError(f"nbapps: parameter {name!r} is not one of its allowed values")
        if number(value):
            if p.get("min") is not None and value < p["min"]:
                raise ValueError(f"nbapps: parameter {name!r} is below its minimum")
            if p.get("max") is not None and value > p["max"]:
                raise ValueError(f"nbapps: parameter {name!r} is above its maximum")
        out[name] = value
    return out
