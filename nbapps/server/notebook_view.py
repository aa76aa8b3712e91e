"""What reviewers look at: the bundle's notebook as sanitized HTML, the diff, the static report.

All three are derived from immutable, content-addressed bundles, so they are computed once (on the
thread pool) and kept in ``<data_dir>/cache/<sha256>/`` (written atomically); the diff is keyed by
both hashes.

* HTML: nbconvert's ``HTMLExporter`` with ``sanitize_html`` (bleach-based: no script, no event
  handlers) and a template without any ``<script>``; the page shows it in a sandboxed frame served
  with a CSP that forbids scripts (:class:`~.pages_review.SubmissionNotebookHandler`).
* Diff: ``nbdime.diff_notebooks`` of the two executed notebooks rendered with nbdime's plain-text
  pretty printer (sources, outputs and metadata), with cell ids, execution counts and run
  timestamps left out; shown as escaped, coloured lines.
Where the notebooks and reports come from is :mod:`.review_data`'s business.
"""
from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from ..catalog import VersionInfo
from .review_data import cached, load_version_notebook

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server")

NBCONVERT_TEMPLATES = Path(__file__).parent / "nbconvert_templates"
#: part of every cached file name: bump it when the rendering, diff or report changes
RENDER_VERSION = "2"
_exporter_lock = threading.Lock()
_exporter: Any = None


# -- HTML -----------------------------------------------------------------------------------------

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


def clean_review_html(element: Any) -> str:
    """bleach with :data:`SAFE_TAGS`: disallowed tags are escaped, never executed."""
    import bleach

    text = element.decode() if isinstance(element, bytes) else str(element)
    return str(bleach.clean(text, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES,
                            protocols=SAFE_PROTOCOLS, strip_comments=True))


def _get_exporter() -> Any:
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(
            template_name="nbapps_review",
            extra_template_basedirs=[str(NBCONVERT_TEMPLATES)],
            sanitize_html=True,
            exclude_anchor_links=True,
            embed_images=True,
        )
        exporter.register_filter("clean_html", clean_review_html)
        _exporter = exporter
    return _exporter


def render_notebook_html(nb: nbformat.NotebookNode) -> str:
    with _exporter_lock:  # nbconvert exporters are not thread-safe
        html, _ = _get_exporter().from_notebook_node(nb)
    return str(html)


def notebook_html(ctx: ServerContext, version: VersionInfo) -> str:
    return cached(ctx, (version.sha256, f"notebook-v{RENDER_VERSION}.html"),
                   lambda: render_notebook_html(load_version_notebook(ctx, version)))


# -- diff -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hdr", ""
    text: str


#: run bookkeeping that changes with every execution and says nothing about the app
_VOLATILE_META = ("execution", "papermill", "ExecuteTime", "collapsed", "scrolled")


def _strip_ids(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without cell ids, execution counts and run timestamps (noise in a review diff)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.pop("id", None)
        for key in _VOLATILE_META:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = None
    return nb


def diff_text(old: nbformat.NotebookNode, new: nbformat.NotebookNode) -> str:
    """nbdime's readable diff of two notebooks (sources, outputs, metadata), no colours."""
    import nbdime
    from nbdime.prettyprint import PrettyPrintConfig, pretty_print_notebook_diff

    a, b = _strip_ids(old), _strip_ids(new)
    diff = nbdime.diff_notebooks(a, b)
    if not diff:
        return ""
    out = io.StringIO()
    config = PrettyPrintConfig(out=out, use_color=False, use_git=False, use_diff=False)
    pretty_print_notebook_diff("live", "submitted", a, diff, config)
    return out.getvalue()


def diff_lines(text: str, limit: int = 5000) -> list[DiffLine]:
    lines = []
    for line in text.splitlines()[:limit]:
        if line.startswith(("nbdiff ", "--- ", "+++ ")):
            continue
        if line.startswith("##"):
            kind = "hdr"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = ""
        lines.append(DiffLine(kind, line))
    return lines


def version_diff(ctx: ServerContext, live: VersionInfo, version: VersionInfo) -> str:
    return cached(
        ctx, (version.sha256, f"diff-{live.sha256}-v{RENDER_VERSION}.txt"),
        lambda: diff_text(load_version_notebook(ctx, live), load_version_notebook(ctx, version)),
    )
