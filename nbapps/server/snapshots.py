"""Variant links and snapshots: an app's curated parameter sets and its instant, kernel-free view.

Variants (:mod:`nbapps.variants`) of the live version are listed on the app page as links that
open the app with the variant's values as URL query values (the texts the parameter bar sends).

**Snapshots** (issue 14 item 4). A version with ``metadata.nbapps.snapshot: true`` gets, when it
goes live, one run of origin ``snapshot`` for its default values and one per variant
(:func:`nbapps.variants.queue_snapshot_runs`, called by the catalog on approval and rollback).
Then:

* ``GET <base>app/<slug>/snapshot[?variant=KEY]`` (:class:`SnapshotHandler`) is a gallery page
  like the app frame: the title, a bar *Snapshot of <time> · Run live*, and the latest passed
  snapshot run's report in a sandboxed iframe. It needs no kernel and no runner: a cached
  catalog read and a template. *Run live* opens the app frame with the same values. Without a
  snapshot of the live version yet (queued, failed, or an older version's) it redirects to the
  live app, as before;
* ``GET <base>app/<slug>/snapshot/<id>/report.html`` (:class:`SnapshotReportHandler`) is the
  report itself, from a small in-memory cache of the immutable blob: app output, so it is served
  with the review preview's frame CSP (sandboxed without ``allow-same-origin``: an opaque
  origin; scripts only from the gallery's static widget folder; no connections);
* the app page links "View the latest report" and each variant to its snapshot when there is
  one (:func:`snapshot_link`).

Both answer only who may open apps (``open_apps``), for an app with a live version, and only
for a passed snapshot run of that live version.
"""
from __future__ import annotations

import gzip
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from ..contract import ParameterContract
from ..errors import NotFound
from ..variants import Variant, find_variant, parse_variants, query_values
from .authz import OPEN_APPS, Requirement
from .base import PageHandler
from .views import contract_of

log = logging.getLogger("nbapps.server.snapshots")


@dataclass(frozen=True)
class VariantLink:
    """A variant as the app page lists it."""

    name: str
    key: str
    url: str
    #: the values in short (``region=EU, year=2024``)
    summary: str


def live_variants(manifest: Any) -> tuple[ParameterContract, list[Variant]]:
    """The contract and the valid variants of a live version's (gallery-derived) manifest."""
    contract = ParameterContract(tuple(contract_of(manifest)))
    raw = manifest.get("variants") if isinstance(manifest, dict) else None
    if not raw:
        return contract, []
    return contract, parse_variants(raw, contract)[0]


def _summary(variant: Variant) -> str:
    text = ", ".join(f"{k}={v}" for k, v in variant.parameters.items()) or "default values"
    return text if len(text) <= 120 else text[:119] + "…"


def variant_links(handler: Any, slug: str, live: Any, open_url: str) -> list[VariantLink]:
    """Links of the live version's variants: its snapshot when there is one, else
    ``open_url`` (where "Open app" goes) with the variant's values as its query."""
    if live is None:
        return []
    contract, variants = live_variants(live.manifest)
    links = []
    for variant in variants:
        snap = snapshot_link(handler, slug, live, variant)
        query = urlencode(query_values(variant, contract))
        url = snap.url if snap is not None else open_url + (f"?{query}" if query else "")
        links.append(VariantLink(variant.name, variant.key, url, _summary(variant)))
    return links


# -- snapshots -------------------------------------------------------------------------------------

SNAPSHOT_PATH = "/app/{slug}/snapshot"
REPORT_PATH = "/app/{slug}/snapshot/{id}/report.html"
ORIGIN = "snapshot"
#: reports kept in memory (blob address -> HTML as served); blobs never change
_REPORTS_KEPT = 32
_reports: OrderedDict[str, tuple[bytes, bytes, bool]] = OrderedDict()
_reports_lock = threading.Lock()


@dataclass(frozen=True)
class Snapshot:
    """The latest passed snapshot run of a live version for one parameter set."""

    run_id: int
    at: datetime | None
    report: str  # blob address of report.html
    variant: Variant | None


def opted_in(manifest: Any) -> bool:
    return isinstance(manifest, dict) and manifest.get("snapshot") is True


def find_snapshot(ctx: Any, slug: str, live: Any, variant: Variant | None) -> Snapshot | None:
    """The snapshot to show for ``variant`` (None: the defaults) of live version ``live``, or
    None (not opted in, none passed yet, or only an older version's). Cached like listings."""
    if live is None or not opted_in(live.manifest):
        return None
    parameters = dict(variant.parameters) if variant is not None else {}

    def load() -> Snapshot | None:
        run = ctx.catalog.latest_run(slug, origin=ORIGIN, parameters=parameters)
        if run is None or run.version_id != live.id or "report.html" not in run.artifacts:
            return None
        return Snapshot(run.id, run.finished_at, run.artifacts["report.html"], variant)

    return ctx.cache.get(("snapshot", slug, live.id, variant.key if variant else ""), load)


def snapshot_path(slug: str, variant: Variant | None = None) -> str:
    path = SNAPSHOT_PATH.format(slug=slug)
    return path + (f"?{urlencode({'variant': variant.key})}" if variant is not None else "")


@dataclass(frozen=True)
class SnapshotLink:
    url: str
    at: datetime | None


def snapshot_link(handler: Any, slug: str, live: Any,
                  variant: Variant | None = None) -> SnapshotLink | None:
    """Where the app page sends a viewer for an instant look, or None (open the live app)."""
    snap = find_snapshot(handler.ctx, slug, live, variant)
    if snap is None:
        return None
    return SnapshotLink(handler.url(snapshot_path(slug, variant)), snap.at)


def _live_detail(ctx: Any, slug: str) -> Any:
    detail = ctx.cache.get(("app-frame", slug), lambda: ctx.catalog.get_app(slug, live_only=True))
    if detail.live is None:
        raise NotFound(f"no app {slug!r}")
    return detail


class SnapshotHandler(PageHandler):
    """``<base>app/<slug>/snapshot[?variant=KEY]``: the latest report, instantly (see the
    module docstring); redirects to the live app when there is no snapshot."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    nav = "gallery"

    def get(self, slug: str) -> None:
        detail = _live_detail(self.ctx, slug)
        contract, variants = live_variants(detail.live.manifest)
        key = self.get_argument("variant", "")[:100]
        variant = find_variant(variants, key)
        if key and variant is None:
            raise NotFound(f"app {slug!r} has no variant {key!r}")
        query = urlencode(query_values(variant, contract)) if variant is not None else ""
        from .app_frame import live_path  # app_frame imports pages_apps, which imports us

        live_url = self.url(live_path(slug)) + (f"?{query}" if query else "")
        snap = find_snapshot(self.ctx, slug, detail.live, variant)
        if snap is None:
            self.redirect(live_url)
            return
        self.render_page(
            "snapshot.html", app=detail.app, live=detail.live, variant=variant, snapshot=snap,
            live_url=live_url, variants=[(v, self.url(snapshot_path(slug, v))) for v in variants],
            defaults_url=self.url(snapshot_path(slug)),
            report_src=self.url(REPORT_PATH.format(slug=slug, id=snap.run_id)),
            share_url=self.gallery_url() + snapshot_path(slug, variant))


class SnapshotReportHandler(PageHandler):
    """``<base>app/<slug>/snapshot/<id>/report.html``: a snapshot run's report, sandboxed."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    frame_options = "SAMEORIGIN"

    async def get(self, slug: str, id: str) -> None:
        from .safe_html import (
            STATIC_FRAME_CSP,
            WIDGET_BUNDLE,
            frame_csp,
            has_widgets,
            with_embed_url,
        )

        detail = _live_detail(self.ctx, slug)
        run = await self.ctx.run(self.ctx.catalog.get_run, int(id))
        sha = run.artifacts.get("report.html")
        if (run.app != slug or run.origin != ORIGIN or run.state != "passed"
                or run.version_id != detail.live.id or sha is None):
            raise NotFound(f"no snapshot {id} of app {slug!r}")
        bundle = self.static_url(WIDGET_BUNDLE)
        origin = f"{self.request.protocol}://{self.request.host}"
        key = f"{sha}|{origin}|{bundle}"
        with _reports_lock:
            cached = _reports.get(key)
            if cached is not None:
                _reports.move_to_end(key)
        if cached is None:
            html = (await self.ctx.run(self.ctx.store.get_blob, sha)).decode("utf-8", "replace")
            widgets = has_widgets(html)
            if widgets:
                html = with_embed_url(html, origin + bundle if bundle.startswith("/") else bundle)
            body = html.encode("utf-8")
            # compressed once here rather than by tornado at every request (~250 KB of CSS)
            cached = (body, gzip.compress(body, 6, mtime=0), widgets)
            with _reports_lock:
                _reports[key] = cached
                while len(_reports) > _REPORTS_KEPT:
                    _reports.popitem(last=False)
        body, packed, widgets = cached
        if widgets:
            folder = bundle.split("?", 1)[0].rsplit("/", 1)[0] + "/"
            self.set_header("Content-Security-Policy", frame_csp(origin + folder))
        else:
            self.set_header("Content-Security-Policy", STATIC_FRAME_CSP)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Referrer-Policy", "no-referrer")
        # the run id names immutable content; still only for this viewer's browser
        self.set_header("Cache-Control", "private, max-age=3600")
        self.set_header("Vary", "Accept-Encoding")
        if "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")  # tornado then leaves it as it is
            body = packed
        self.finish(body)


__all__ = ["REPORT_PATH", "SNAPSHOT_PATH", "Snapshot", "SnapshotHandler", "SnapshotLink",
           "SnapshotReportHandler", "VariantLink", "find_snapshot", "live_variants", "opted_in",
           "snapshot_link", "snapshot_path", "variant_links"]
