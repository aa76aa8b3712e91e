"""What the app page shows of runs (issue 14): the *Download report* control and the list of
the app's recent runs, server-rendered (``templates/app_runs.html``); ``static/app_runs.js``
starts runs and follows them through the runs API (:mod:`nbapps.server.api_runs`).

Everyone who may open the app sees its recent runs (the rule of the runs API); a failed run's
first error is shown only to those who see its findings (:func:`~.api_runs.may_see_run_findings`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..catalog.runs import RunInfo
from ..errors import NbappsError
from .api_runs import may_see_run_findings
from .authz import OPEN_APPS

log = logging.getLogger("nbapps.server")

#: runs listed on the app page
RECENT_RUNS = 10
#: the downloads a run row links to (artifact name, label)
DOWNLOADS = (("report.html", "HTML"), ("report.pdf", "PDF"))
#: a run state → the page's state colour (nbapps.css ``.state-*``)
STATE_CLASS = {"queued": "submitted", "running": "submitted", "passed": "approved",
               "failed": "rejected", "error": "rejected", "cancelled": "withdrawn"}


@dataclass(frozen=True)
class RunRow:
    """One run as the app page lists it."""

    id: int
    state: str
    state_class: str
    origin: str
    owner: str
    at: datetime
    parameters: dict[str, Any]
    seconds: float | None
    #: (label, URL) of the downloads it has (``?download=1``)
    downloads: list[tuple[str, str]] = field(default_factory=list)
    #: the first error message, for those who may see the run's findings
    problem: str = ""


def run_row(ctx: Any, run: RunInfo, *, findings: bool) -> RunRow:
    pdfs = getattr(getattr(ctx, "runs", None), "pdfs", None)
    downloads = [(label, ctx.options.url(f"/api/runs/{run.id}/{name}") + "?download=1")
                 for name, label in DOWNLOADS if name in run.artifacts
                 or (name == "report.pdf" and pdfs is not None and pdfs.offered(run))]
    problem = ""
    if findings and run.state in ("failed", "error"):
        errors = [f for f in run.findings if f.get("severity", "error") == "error"]
        if errors:
            problem = f"{errors[0].get('code', '')}: {errors[0].get('message', '')}"[:300]
    return RunRow(id=run.id, state=run.state, state_class=STATE_CLASS.get(run.state, run.state),
                  origin=run.origin, owner=run.owner or "gallery",
                  at=run.finished_at or run.started_at or run.created_at,
                  parameters=dict(run.parameters), seconds=run.seconds, downloads=downloads,
                  problem=problem)


def app_runs_context(ctx: Any, user: Any, detail: Any) -> dict[str, Any]:
    """Template values of the app page: ``can_run`` (the *Download report* control: a signed-in
    user who may open the app, which has a live version), ``runs_url`` (where it POSTs) and
    ``recent_runs`` (rows, newest first; empty for those who may not open the app)."""
    slug = detail.app.slug
    may_open = ctx.authorizer.is_allowed(user, OPEN_APPS)
    rows: list[RunRow] = []
    if may_open:
        try:
            runs = ctx.catalog.list_runs(slug, limit=RECENT_RUNS)
        except NbappsError as exc:
            log.warning("runs of %s unavailable: %s", slug, exc.message)
            runs = []
        rows = [run_row(ctx, r, findings=may_see_run_findings(ctx, user, detail, r))
                for r in runs]
    return {"can_run": bool(user is not None and may_open and detail.live is not None),
            "runs_url": ctx.options.url(f"/api/apps/{slug}/runs"), "recent_runs": rows}


__all__ = ["RECENT_RUNS", "RunRow", "app_runs_context", "run_row"]
