"""Review pages and decisions: reasons (API, form, CLI), reject confirmation, the diff on the
submission page, and how submission states (validating, failed) are shown.

A real gallery in a thread (SQLite) that checks every submission itself (a kernel per check);
the CLI runs as a subprocess. The state pages are
rendered with the server's own template environment from :func:`submission_status`, for
states the catalog of today cannot hold yet (``validating``, ``failed``).
"""
from __future__ import annotations

import copy
import re
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import pytest
from markupsafe import Markup
from nbformat.v4 import new_output

from nbapps.catalog import VersionInfo
from nbapps.review import State
from nbapps.server.context import make_template_env
from nbapps.server.pages_review import Status, submission_status
from nbapps.server.review_data import CheckView
from tests.nbfactory import make_notebook
from tests.server_harness import build_archive, thread_gallery
from tests.test_cli_publish_review import nbapps


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("review-pages")) as g:
        yield g


def submit(g, tmp_path, title: str, nb=None) -> int:
    """Upload a bundle and wait until the gallery's check (if it runs one) is over."""
    data = build_archive(tmp_path / title.replace(" ", "-"),
                         nb or make_notebook(meta={"title": title}))
    with g.client("ana") as c:
        r = c.post("/api/submissions", content=data,
                   headers={"Content-Type": "application/gzip"})
        assert r.status_code in (200, 201), r.text
        vid = int(r.json()["id"])
    deadline = time.monotonic() + 240
    while state_of(g, vid) == "validating":
        assert time.monotonic() < deadline, f"submission {vid} still validating"
        time.sleep(0.2)
    assert state_of(g, vid) == "submitted"
    return vid


def state_of(g, vid: int) -> str:
    with g.client("rita") as c:
        return str(c.get(f"/api/submissions/{vid}").json()["state"])


# -- decisions carry reasons ----------------------------------------------------------------------

@pytest.mark.kernel  # the gallery runs each submission (a kernel)
def test_api_refuses_reject_and_request_changes_without_a_reason(gallery, tmp_path):
    g = gallery
    vid = submit(g, tmp_path, "Reasons api")
    with g.client("rita") as rita:
        for decision in ("reject", "request_changes"):
            for body in ({"decision": decision}, {"decision": decision, "comment": "  \n "}):
                r = rita.post(f"/api/submissions/{vid}/decision", json=body)
                assert r.status_code == 400 and r.json()["error"] == "NBA350", r.text
        assert state_of(g, vid) == "submitted"
        r = rita.post(f"/api/submissions/{vid}/decision",
                      json={"decision": "request_changes", "comment": "Add a legend, please."})
        assert r.status_code == 200, r.text
    # what the author (and the JupyterLab panel) reads back
    with g.client("ana") as ana:
        detail = ana.get(f"/api/submissions/{vid}").json()
    assert detail["state"] == "changes_requested"
    assert detail["comment"] == "Add a legend, please." and detail["decided_by"] == "rita"
    assert detail["decided_at"]
    last = detail["reviews"][-1]
    assert (last["actor"], last["action"], last["to_state"], last["comment"]) == (
        "rita", "request_changes", "changes_requested", "Add a legend, please.")


@pytest.mark.kernel  # the gallery runs each submission (a kernel)
def test_form_needs_a_reason_and_reject_asks_for_confirmation(gallery, tmp_path):
    g = gallery
    vid = submit(g, tmp_path, "Reasons form")
    with g.browser("rita") as rita:
        page = rita.get(f"/submissions/{vid}").text
        assert 'value="reject"' in page and "Reject…" in page
        for decision in ("reject", "request_changes"):
            r = rita.post_form(f"/submissions/{vid}/decision", {"decision": decision,
                                                                "comment": " "})
            assert r.status_code == 400 and "NBA350" in r.text
        reason = "Duplicates <the> \"sales\" app"
        ask = rita.post_form(f"/submissions/{vid}/decision",
                             {"decision": "reject", "comment": reason})
        assert ask.status_code == 200 and "Yes, reject" in ask.text
        assert 'name="confirm" value="yes"' in ask.text
        assert "Duplicates &lt;the&gt; &#34;sales&#34; app" in ask.text  # escaped, kept
        assert state_of(g, vid) == "submitted"  # nothing decided yet
        hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', ask.text))
        assert hidden["decision"] == "reject" and hidden["confirm"] == "yes"
        done = rita.post_form(f"/submissions/{vid}/decision",
                              {"decision": "reject", "comment": reason, "confirm": "yes"})
        assert done.status_code == 302 and done.headers["location"].endswith("?done=reject")
    assert state_of(g, vid) == "rejected"
    with g.browser("ana") as ana:
        mine = ana.get("/my").text
        sub = ana.get(f"/submissions/{vid}").text
    assert "Duplicates &lt;the&gt; &#34;sales&#34; app" in mine
    assert "Rejected by rita" in sub and "Duplicates &lt;the&gt; &#34;sales&#34; app" in sub


@pytest.mark.kernel  # the gallery runs each submission (a kernel)
def test_cli_decisions_need_a_reason(gallery, tmp_path):
    g = gallery
    home = tmp_path / "home"
    home.mkdir()
    reviewer = {"NBAPPS_GALLERY": g.url, "NBAPPS_TOKEN": g.users["rob"].token}
    vid = submit(g, tmp_path, "Reasons cli")
    for action in ("reject", "request-changes"):
        r = nbapps("review", action, str(vid), env=reviewer, home=home)
        assert r.returncode == 2 and "NBA350" in r.stderr, (r.returncode, r.stderr)
    r = nbapps("review", "request-changes", str(vid), "-m", "Name the units", env=reviewer,
               home=home)
    assert r.returncode == 0 and "changes requested" in r.stdout, r.stderr
    shown = nbapps("review", "show", str(vid), env=reviewer, home=home)
    assert "Name the units" in shown.stdout


# -- the diff on the page -------------------------------------------------------------------------

@pytest.mark.kernel  # the gallery runs each submission (a kernel)
def test_submission_page_shows_sources_then_outputs_escaped(gallery, tmp_path):
    g = gallery
    meta = {"title": "Diff page", "description": "d"}
    base = make_notebook(meta=meta, extra=["total = n * 2\nprint(total)"])
    base.cells[0].source = "# Diff page\n\nShows the total for the region."
    v1 = submit(g, tmp_path, "Diff page", base)
    with g.client("rob") as rob:
        assert rob.post(f"/api/submissions/{v1}/decision",
                        json={"decision": "approve"}).status_code == 200
    edited = copy.deepcopy(base)
    edited.cells[0].source = "# Diff page\n\nShows the <script>alert(1)</script> total."
    edited.cells[2].source = "total = n * 3\nprint(total)"
    v2 = submit(g, tmp_path, "Diff page 2", edited)
    with g.browser("rita") as rita:
        page = rita.get(f"/submissions/{v2}").text
    sources, _, outputs = page.partition("<h3>Output changes</h3>")
    assert "<h3>Source changes</h3>" in sources and outputs  # sources first
    assert sources.count('class="change-modified"') == 2 and 'class="change-added"' not in sources
    assert "<ins>&lt;script&gt;alert(1)&lt;/script&gt; </ins>" in sources or \
        "&lt;script&gt;alert(1)&lt;/script&gt;" in sources
    assert "<del>2</del>" in sources and "<ins>3</ins>" in sources
    assert not re.search(r"<script\b", page)


@pytest.mark.kernel  # the gallery runs each submission (a kernel)
def test_a_resubmission_that_differs_only_in_run_data_shows_no_change(gallery, tmp_path):
    """Same cells; the stored notebooks differ only in saved outputs, execution counts and
    widget ids (the gallery runs each and gets new widget ids too): no change."""
    g = gallery
    nb = make_notebook(meta={"title": "Rerun page", "description": "d"})
    first, second = copy.deepcopy(nb), copy.deepcopy(nb)
    for count, copy_ in ((1, first), (7, second)):
        widget = copy_.cells[-1]
        widget.execution_count = count
        widget.outputs = [new_output("execute_result", execution_count=count, data={
            "text/plain": "IntSlider(value=3)", "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": uuid.uuid4().hex}})]
        copy_.metadata["papermill"] = {"duration": count}
    v1 = submit(g, tmp_path, "Rerun page", first)
    with g.client("rob") as rob:
        assert rob.post(f"/api/submissions/{v1}/decision",
                        json={"decision": "approve"}).status_code == 200
    v2 = submit(g, tmp_path, "Rerun page 2", second)
    assert v2 != v1
    with g.browser("rita") as rita:
        page = rita.get(f"/submissions/{v2}").text
    assert "No change to the notebook" in page, page[page.find("Changes against"):][:2000]
    assert "<h3>Source changes</h3>" not in page


# -- states ---------------------------------------------------------------------------------------

@pytest.mark.kernel
def test_validating_and_failed_submissions_on_the_pages(tmp_path_factory):
    """One check worker: a slow submission runs, a broken one waits in the queue, then fails."""
    folder = tmp_path_factory.mktemp("q")
    slow = build_archive(folder / "slow", make_notebook(
        meta={"title": "Slow one"}, extra=["import time\ntime.sleep(4)"]))
    broken = build_archive(folder / "broken", make_notebook(
        meta={"title": "Broken one"}, extra=["1 / 0"]))
    with thread_gallery(folder / "g", args=["--NbappsServer.check_workers=1"]) as g:
        with g.client("ana") as ana:
            ids = [ana.post("/api/submissions", content=a).json()["id"] for a in (slow, broken)]
        with g.browser("rita") as rita:
            queue = rita.get("/review").text
            waiting = rita.get(f"/submissions/{ids[1]}").text
        with g.browser("ana") as ana_page:
            mine = ana_page.get("/my").text
        for html in (queue, mine):
            assert "checking — running" in html and "checking — place 1 in the queue" in html
            assert '<meta http-equiv="refresh"' in html
        assert "place 1 in the queue" in waiting and '<meta http-equiv="refresh"' in waiting
        assert 'value="approve"' not in waiting

        deadline = time.monotonic() + 240
        while {state_of(g, i) for i in ids} & {"validating"}:
            assert time.monotonic() < deadline, "checks did not finish"
            time.sleep(0.2)
        assert [state_of(g, i) for i in ids] == ["submitted", "failed"]
        with g.browser("rita") as rita:
            failed = rita.get(f"/submissions/{ids[1]}").text
            ready = rita.get(f"/submissions/{ids[0]}").text
            queue = rita.get("/review").text
        with g.browser("ana") as ana_page:
            mine = ana_page.get("/my").text
    assert "cannot be approved" in failed and "ZeroDivisionError" in failed
    assert re.search(r"<code>NBA0\d\d</code>", failed)
    assert 'value="approve"' not in failed and 'value="request_changes"' in failed
    assert 'value="approve"' in ready and "http-equiv" not in ready
    assert "checks failed" in queue and "checks failed" in mine and "http-equiv" not in mine


def test_submission_status_rules():
    queued = submission_status("validating", CheckView(state="queued", queue_position=3))
    assert queued == Status("validating", "queued", "checking — place 3 in the queue", 3,
                            pending=True, approvable=False)
    running = submission_status("validating", CheckView(state="running"))
    assert running.label == "checking — running" and running.pending and not running.approvable
    failed = submission_status("failed", CheckView(state="failed", findings=[{"code": "NBA070"}]))
    assert failed.label == "checks failed" and not failed.pending and not failed.approvable
    assert submission_status("submitted", CheckView(state="passed")).approvable
    assert submission_status("submitted", CheckView(state="none")).approvable
    assert not submission_status("submitted", CheckView(state="error")).approvable
    assert submission_status("changes_requested", CheckView(state="none")).label == \
        "changes requested"


@dataclass(frozen=True)
class _NewState:
    """A version state the catalog of today has no member for (the check engine adds them)."""

    value: str


def _version(vid: int, state: str, **kw: Any) -> VersionInfo:
    known = {s.value for s in State}
    return VersionInfo(
        id=vid, app_slug="sales", number=vid, sha256="ab" * 32,
        state=State(state) if state in known else _NewState(state),  # type: ignore[arg-type]
        submitter="ana", created_at=datetime(2026, 1, 2, tzinfo=timezone.utc),
        title=f"Sales {vid}", description="d", tags=(), store_key="k", **kw)


def _render(template: str, **values: Any) -> str:
    env = make_template_env([])
    ns = {"user": type("U", (), {"name": "rita", "role": "reviewer"})(),
          "site_name": "gallery", "static_url": lambda p: f"/static/{p}",
          "xsrf_form_html": lambda: Markup('<input type="hidden" name="_xsrf" value="x">'),
          "can": lambda name: True, "nav": "review", "notice": None, "notice_kind": "",
          "extra_css": []}
    return env.get_template(template).render({**ns, **values})


def test_states_render_on_the_queue_my_submissions_and_submission_pages():
    checking = _version(1, "validating")
    failed = _version(2, "failed")
    waiting = _version(3, "submitted")
    statuses = {
        1: submission_status("validating", CheckView(state="queued", queue_position=2)),
        2: submission_status("failed", CheckView(state="failed")),
        3: submission_status("submitted", CheckView(state="passed")),
    }
    queue = _render("review_queue.html", queue=[checking, failed, waiting], statuses=statuses,
                    page=1, has_next=False, refresh=5)
    rows = re.findall(r"<tr><td><a href=\"/submissions/(\d)\">.*?</tr>", queue, re.S)
    assert rows == ["1", "2", "3"]
    assert "checking — place 2 in the queue" in queue and "checks failed" in queue
    assert '<meta http-equiv="refresh" content="5">' in queue
    mine = _render("my_submissions.html", items=[checking, failed], statuses=statuses, page=1,
                   has_next=False, refresh=5, withdrawable={1})
    assert "checking — place 2 in the queue" in mine and "see the findings" in mine
    assert mine.count(">Withdraw</button>") == 1

    common = dict(app=type("A", (), {"slug": "sales", "live_version_id": None,
                                     "author": "ana"})(),
                  live=None, diff=None, problems=[], reviews=[], comments=[],
                  can_withdraw=False, own=False, publisher_report=None)
    page = _render("submission.html", v=checking, status=statuses[1],
                   check=CheckView(state="queued", queue_position=2), refresh=5,
                   can_approve=False, can_request_changes=True, can_reject=True,
                   can_decide=True, **common)
    assert "place 2 in the queue" in page and '<meta http-equiv="refresh" content="5">' in page
    assert 'value="approve"' not in page and "once the gallery's check has passed" in page
    findings = [{"code": "NBA070", "severity": "error", "cell": 3, "cell_line": "1/0",
                 "message": "cell 3 raised ZeroDivisionError", "hint": ""}]
    page = _render("submission.html", v=failed, status=statuses[2],
                   check=CheckView(state="failed", findings=findings), refresh=None,
                   can_approve=False, can_request_changes=True, can_reject=True,
                   can_decide=True, **common)
    assert "NBA070" in page and "cannot be approved" in page and "ZeroDivisionError" in page
    assert 'value="approve"' not in page and 'value="reject"' in page
    assert "http-equiv" not in page
    rejected = replace(_version(4, "rejected"), decided_by="rob", comment="Not our data",
                       decided_at=datetime(2026, 1, 3, tzinfo=timezone.utc))
    page = _render("submission.html", v=rejected,
                   status=submission_status("rejected", CheckView(state="passed")),
                   check=CheckView(state="passed"), refresh=None, can_approve=False,
                   can_request_changes=False, can_reject=False, can_decide=False, **common)
    assert "Rejected by rob" in page and "Not our data" in page
