"""The small pages the app proxy answers with itself (templates ``app_wait.html``,
``app_notice.html``): starting (with its steps), busy, failed (with a reference number), not
found, not allowed, link expired and invalid parameters.

They are shown inside the app frame's iframe (or to scripts reading ``<base>apps/<slug>/``), so
they are not full gallery pages: no header, inline style only, nothing to load. Operators can
override them like any template (``NbappsServer.template_paths``).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2

from .app_status import STEPS, AppStatus

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _default_env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True)


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parameter_rows(parameters: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for p in parameters:
        allowed = []
        if p.get("choices") is not None:
            allowed.append("one of: " + ", ".join(_text(c) for c in p["choices"]))
        if p.get("min") is not None:
            allowed.append(f"min {_text(p['min'])}")
        if p.get("max") is not None:
            allowed.append(f"max {_text(p['max'])}")
        rows.append({"name": str(p.get("name")), "type": str(p.get("type")),
                     "default_text": _text(p.get("default")), "allowed": "; ".join(allowed),
                     "help": str(p.get("help") or "")})
    return rows


class AppPages:
    """Renders the proxy's pages with the gallery's template environment (or the built-in one)."""

    def __init__(self, templates: jinja2.Environment | None = None) -> None:
        self.env = templates or _default_env()

    def _render(self, name: str, **values: Any) -> str:
        return self.env.get_template(name).render(**values)

    def wait(self, status: AppStatus, refresh: int) -> str:
        """Starting / busy / unavailable: reloads itself every ``refresh`` seconds."""
        return self._render("app_wait.html", status=status, steps=STEPS, title=status.title,
                            refresh=max(int(refresh), 1))

    def notice(self, heading: str, message: str = "", *, code: str = "", link: str = "",
               link_text: str = "") -> str:
        return self._render("app_notice.html", title=heading, heading=heading, message=message,
                            code=code, link=link, link_text=link_text, problems=[],
                            parameters=[], refresh=None)

    def not_found(self) -> str:
        return self.notice("Not found", "This app does not exist or is not published.",
                           code="NBA302")

    def forbidden(self) -> str:
        return self.notice("Not allowed", "You may not open this app.", code="NBA301")

    def expired(self) -> str:
        return self.notice("This page has expired",
                           "Reload the app's page in your browser to open it again.",
                           code="NBA340")

    def bad_parameters(self, title: str, problems: Iterable[str],
                       parameters: Iterable[dict[str, Any]], app_url: str, *,
                       code: str = "NBA101") -> str:
        """The 400 page: what is wrong and every parameter the app accepts."""
        return self._render(
            "app_notice.html", title=f"Invalid parameters for {title}",
            heading=f"Invalid parameters for {title}", message="", code=code,
            problems=list(problems), parameters=_parameter_rows(parameters), link=app_url,
            link_text="Open the app with its default values", refresh=None)


def bad_parameters_page(title: str, problems: Iterable[str], parameters: Iterable[dict[str, Any]],
                        app_url: str) -> str:
    """:meth:`AppPages.bad_parameters` with the built-in templates."""
    return AppPages().bad_parameters(title, problems, parameters, app_url)
