"""The small HTML pages the proxy answers with itself: starting, busy, unavailable, bad request.

Self-contained (no script, no external asset) so they work while no runner is up.
"""
from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

#: Security headers of these pages: nothing may load, only our inline style.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;"
    "background:#f6f7f9;color:#1f2328}main{max-width:640px;margin:12vh auto;padding:28px 32px;"
    "background:#fff;border-radius:10px;box-shadow:0 1px 4px rgba(0,0,0,.12)}h1{font-size:1.35em;"
    "margin-top:0}p{line-height:1.5}code{background:#f0f0f3;padding:1px 5px;border-radius:4px}"
    "table{border-collapse:collapse;width:100%;margin-top:8px}td,th{text-align:left;"
    "padding:6px 8px;border-bottom:1px solid #e4e4e8;vertical-align:top}.muted{color:#656d76}"
    ".problem{color:#b42318}"
)


def _page(title: str, body: str, refresh: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{meta}"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def starting_page(title: str, retry_after: int) -> str:
    body = (f"<h1>Starting {html.escape(title)}…</h1>"
            "<p>The app is being started for you. This page reloads by itself in a moment.</p>"
            f"<p class=\"muted\">Retrying every {int(retry_after)} s.</p>")
    return _page(f"Starting {title}", body, refresh=retry_after)


def busy_page(title: str, retry_after: int, reason: str) -> str:
    body = (f"<h1>{html.escape(title)} is busy</h1>"
            f"<p>{html.escape(reason)} Please try again in a little while; this page retries "
            f"by itself in {int(retry_after)} s.</p>")
    return _page(f"{title} is busy", body, refresh=retry_after)


def unavailable_page(title: str, retry_after: int, detail: str = "") -> str:
    extra = f"<p class=\"muted\">{html.escape(detail)}</p>" if detail else ""
    body = (f"<h1>{html.escape(title)} is not available right now</h1>"
            "<p>The app failed to start; it is being restarted. This page retries by itself.</p>"
            f"{extra}")
    return _page(f"{title} unavailable", body, refresh=retry_after)


def not_found_page(what: str = "This app does not exist or is not published.") -> str:
    return _page("Not found", f"<h1>Not found</h1><p>{html.escape(what)}</p>")


def forbidden_page() -> str:
    return _page("Not allowed", "<h1>Not allowed</h1><p>You may not open this app.</p>")


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bad_parameters_page(
    title: str,
    problems: Iterable[str],
    parameters: Iterable[dict[str, Any]],
    app_url: str,
) -> str:
    """The 400 page: what is wrong and every parameter the app accepts."""
    items = "".join(f"<li class=\"problem\">{html.escape(p)}</li>" for p in problems)
    rows = []
    for p in parameters:
        allowed = []
        if p.get("choices") is not None:
            allowed.append("one of: " + ", ".join(_value(c) for c in p["choices"]))
        if p.get("min") is not None:
            allowed.append(f"min {_value(p['min'])}")
        if p.get("max") is not None:
            allowed.append(f"max {_value(p['max'])}")
        rows.append(
            "<tr>"
            f"<td><code>{html.escape(str(p.get('name')))}</code></td>"
            f"<td>{html.escape(str(p.get('type')))}</td>"
            f"<td><code>{html.escape(_value(p.get('default')))}</code></td>"
            f"<td>{html.escape('; '.join(allowed))}</td>"
            f"<td>{html.escape(str(p.get('help') or ''))}</td>"
            "</tr>"
        )
    table = ("<table><tr><th>name</th><th>type</th><th>default</th><th>allowed</th>"
             "<th>help</th></tr>" + "".join(rows) + "</table>") if rows else (
        "<p>This app takes no parameters.</p>")
    body = (f"<h1>Invalid parameters for {html.escape(title)}</h1><ul>{items}</ul>"
            f"<p>Parameters this app accepts (as <code>?name=value</code>):</p>{table}"
            f"<p><a href=\"{html.escape(app_url)}\">Open the app with its default values</a></p>")
    return _page(f"Invalid parameters for {title}", body)
