"""Notebook HTML that is safe to show: the sanitizer, widget outputs and the frame's CSP.

Shared by the review preview (:mod:`.notebook_view`), run reports (:mod:`nbapps.runs.report`)
and snapshots. It imports nothing of the gallery's catalog or server, so the confined run
program (which renders reports) does not load SQLAlchemy for it.

* :func:`clean_review_html` is nbconvert's ``clean_html`` filter with our allowlist;
* :func:`prepare_outputs` keeps widget views that :class:`.widget_state.WidgetSet` can render and
  puts a placeholder in place of the others;
* a page's widget script is written as :data:`EMBED_MARKER` and gets its URL when served
  (:func:`with_embed_url`), under :func:`frame_csp`.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import nbformat

from .widget_state import WIDGET_VIEW_MIME, WidgetSet, model_label, widget_view

STATIC_DIR = Path(__file__).parent / "static"
#: the HTML manager's embed bundle, relative to the static folder (``make widgets``)
WIDGET_BUNDLE = "widgets/embed.js"
#: stands for our bundle's URL in cached pages; the frame handler puts the real URL in
EMBED_MARKER = "__nbapps_widget_embed__"


def text_of(value: Any) -> str:
    """A notebook text field (a string or a list of lines) as one string."""
    return "".join(value) if isinstance(value, list) else str(value or "")


# -- sanitizing -----------------------------------------------------------------------------------

#: what rendered markdown and HTML outputs may keep (bleach allowlist). nbconvert's own
#: ``clean_html`` keeps only bleach's inline defaults, which escapes headings, paragraphs and
#: most of a pandas table; this list keeps documents readable and still drops every script,
#: event handler, form, frame, object, style element and non-data image source.
SAFE_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "details", "div",
    "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "s", "samp", "small", "span", "strong",
    "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
    "var",
})
SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title", "lang", "dir"],
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align", "scope"],
    "ol": ["start", "type"],
}
SAFE_PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
#: class names notebook HTML may not borrow: the page's own layout (a ``jp-Dialog`` or a
#: ``nbapps-*`` badge in an output could cover or imitate the review annotations)
_RESERVED_CLASS_PREFIXES = ("jp-", "lm-", "p-", "nbapps", "widget-", "jupyter-")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name == "class":
        return not any(c.startswith(_RESERVED_CLASS_PREFIXES) for c in value.split())
    return name in SAFE_ATTRIBUTES.get(tag, ()) or name in SAFE_ATTRIBUTES["*"]


def clean_review_html(element: Any) -> str:
    """bleach with :data:`SAFE_TAGS`: disallowed tags are escaped, never executed."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    return str(bleach.clean(text, tags=SAFE_TAGS, attributes=_allowed_attribute,
                            protocols=SAFE_PROTOCOLS, strip_comments=True))


def _placeholder(data: dict[str, Any], reason: tuple[str, ...]) -> dict[str, Any]:
    libraries = [r for r in reason if r not in ("missing", "?")]
    if libraries:
        what = ("Custom widget (" + ", ".join(libraries) + "): the preview has no renderer "
                "for this library; it shows in the live app.")
    else:
        what = "Widget without saved state: the run did not save it (closed or never shown)."
    text = text_of(data.get("text/plain", ""))
    html = f'<div class="review-widget-placeholder"><p><strong>{_esc(what)}</strong></p>'
    if text:
        html += f"<pre>{_esc(text)}</pre>"
    return {"text/html": html + "</div>", "text/plain": text or what}


def _esc(text: str) -> str:
    return escape(text, quote=True)


def prepare_outputs(outputs: list[Any], widgets: WidgetSet) -> list[Any]:
    prepared = []
    for out in outputs:
        out = nbformat.from_dict(json.loads(json.dumps(out)))
        data = out.get("data")
        if isinstance(data, dict) and WIDGET_VIEW_MIME in data:
            view = widget_view(data[WIDGET_VIEW_MIME])
            if view is not None and widgets.renderable(view["model_id"]):
                label = model_label(widgets.models, view["model_id"])
                plain = text_of(data.get("text/plain", "")) or label
                out["data"] = {WIDGET_VIEW_MIME: view, "text/plain": plain}
            else:
                reason = widgets.blocked.get(view["model_id"], ("missing",)) if view else \
                    ("missing",)
                out["data"] = _placeholder(data, reason)
        prepared.append(out)
    return prepared


def renderer_installed() -> bool:
    return (STATIC_DIR / WIDGET_BUNDLE).is_file()


def has_widgets(html: str) -> bool:
    return EMBED_MARKER in html


def with_embed_url(html: str, url: str) -> str:
    """Put the bundle's URL in place of the marker (the last one: ours ends the page)."""
    head, sep, tail = html.rpartition(EMBED_MARKER)
    return head + _esc(url) + tail if sep else html


#: the frame without widgets: no script at all
STATIC_FRAME_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


def frame_csp(script_base: str | None) -> str:
    """CSP of the preview frame: with widgets, scripts only from ``script_base`` (our static
    widget folder, an absolute URL prefix). The HTML manager's schema validator (ajv) compiles
    with ``new Function``, hence ``'unsafe-eval'``; nothing else may run, the frame has an
    opaque origin (no ``allow-same-origin``), and it can reach no server."""
    if script_base is None:
        return STATIC_FRAME_CSP
    return (
        f"default-src 'none'; script-src {script_base} 'unsafe-eval'; "
        "style-src 'unsafe-inline'; img-src data: blob:; media-src blob:; font-src data:; "
        "connect-src 'none'; sandbox allow-scripts; frame-ancestors 'self'; base-uri 'none'; "
        "form-action 'none'"
    )


