"""Submission and review flows through a real server, on SQLite and on PostgreSQL.

Upload (idempotent, tampered, oversized), review pages (report, sandboxed notebook, diff),
four-eyes, concurrent decisions, withdraw, comments, rollback, gallery search, audit export.
"""
from __future__ import annotations

import copy
import gzip
import io
import json
import socket
import tarfile
import threading
from urllib.parse import urlsplit

import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import build_archive, catalog_of, thread_gallery, wait_checked


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                                 marks=pytest.mark.postgres)])
def gallery(request, tmp_path_factory):
    db_url = None
    name = None
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        name, db_url = server.fresh_database()
    try:
        with thread_gallery(tmp_path_factory.mktemp(f"flows-{request.param}"), db_url,
                            args=["--NbappsServer.max_upload_bytes=200000"]) as g:
            yield g
    finally:
        if name is not None:
            request.getfixturevalue("pg_server").drop_database(name)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Archives: v1 and v2 of one app, v1 re-packed from another run, a hostile app."""
    base = tmp_path_factory.mktemp("bundles")
    meta = {"title": "Sales board", "description": "Sales by region.", "tags": ["sales", "eu"]}
    nb = make_notebook(meta=meta)
    v1 = build_archive(base / "v1", copy.deepcopy(nb), executed_note="run 1\n")
    v1b = build_archive(base / "v1b", copy.deepcopy(nb), executed_note="run 2\n")
    v2 = build_archive(base / "v2", make_notebook(
        meta=meta, params='n = 5  # how many\nlabel = "x"  # a label\n'))
    return {"v1": v1, "v1b": v1b, "v2": v2}


def upload(g, who: str, data: bytes, **params):
    with g.client(who) as c:
        return c.post("/api/submissions", content=data, params=params,
                      headers={"Content-Type": "application/gzip"})


def approve(g, who: str, version_id: int, decision: str = "approve", comment: str = "ok"):
    with g.client(who) as c:
        return c.post(f"/api/submissions/{version_id}/decision",
                      json={"decision": decision, "comment": comment})


def test_submit_review_publish(gallery, bundles):
    g = gallery
    r = upload(g, "ana", bundles["v1"])
    assert r.status_code == 201, r.text
    sub = r.json()
    # recorded at once; reviewable when the gallery's own check of the source has passed
    assert sub["state"] == "validating" and sub["created"] is True
    assert sub["check"]["state"] in ("queued", "running")
    assert urlsplit(sub["url"]).path == f"/submissions/{sub['id']}"
    # identical content again, even packed from another run: the same submission
    for data in (bundles["v1"], bundles["v1b"]):
        again = upload(g, "ana", data)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == sub["id"] and again.json()["created"] is False

    # not visible in the gallery before approval, nor through /apps/
    checked = wait_checked(g, sub["id"])
    assert checked["state"] == "submitted" and checked["check"]["state"] == "passed"
    with g.client("vic") as viewer:
        assert viewer.get("/api/apps", params={"q": "sales"}).json()["total"] == 0
        assert viewer.get("/api/apps/sales-board").status_code == 404
        assert viewer.get(f"/api/submissions/{sub['id']}").status_code == 403
        assert viewer.get("/app/sales-board/thumbnail").status_code == 404

    with g.browser("rita") as rita:
        queue = rita.get("/review")
        assert queue.status_code == 200 and f"/submissions/{sub['id']}" in queue.text
        page = rita.get(f"/submissions/{sub['id']}")
        assert page.status_code == 200
        assert "Validation report" in page.text
        assert 'sandbox="allow-scripts" title="Executed notebook' in page.text
        assert 'value="approve"' in page.text
        frame = rita.get(f"/submissions/{sub['id']}/notebook")
        assert frame.status_code == 200
        csp = frame.headers["Content-Security-Policy"]
        assert "sandbox" in csp and "default-src 'none'" in csp
        # the gallery's run saved widget state: only the gallery's widget renderer may run
        scripts = [d for d in csp.split(";") if d.strip().startswith("script-src")]
        assert all("/static/widgets/" in d for d in scripts), csp
        # the gallery's own run is shown, never the executed notebook the client uploaded
        assert "run 1" not in frame.text and "run 2" not in frame.text
        thumb = rita.get(f"/submissions/{sub['id']}/thumbnail")
        assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
        r = rita.post_form(f"/submissions/{sub['id']}/decision",
                           {"decision": "approve", "comment": "looks good"})
        assert r.status_code == 302, r.text
        assert r.headers["location"] == f"/submissions/{sub['id']}?done=approve"

    with g.browser("vic") as vic:
        home = vic.get("/")
        assert "Sales board" in home.text and "/app/sales-board" in home.text
        assert vic.get("/?q=region").text.count('class="card"') == 1
        assert vic.get("/?q=nothingmatches").text.count('class="card"') == 0
        assert vic.get("/?tag=eu").text.count('class="card"') == 1
        app = vic.get("/app/sales-board")
        assert app.status_code == 200 and 'action="/app/sales-board/open"' in app.text
        assert 'name="n"' in app.text and "how many" in app.text.lower()  # the form's label
        assert vic.get("/app/sales-board/thumbnail").content.startswith(b"\x89PNG")
        runtime = vic.get("/apps/sales-board/")
        assert runtime.status_code == 503 and "not available yet" in runtime.text
    with g.client("vic") as viewer:
        found = viewer.get("/api/apps", params={"q": "sales", "tag": "eu"}).json()
        assert [a["slug"] for a in found["items"]] == ["sales-board"]
        detail = viewer.get("/api/apps/sales-board").json()
        assert detail["live"]["id"] == sub["id"]
        assert [p["name"] for p in detail["parameters"]] == ["n", "label"]

    # version 2: the reviewer sees the diff against the live version
    r2 = upload(g, "ana", bundles["v2"])
    assert r2.status_code == 201, r2.text
    v2 = r2.json()["id"]
    assert wait_checked(g, v2)["state"] == "submitted"
    with g.browser("rob") as rob:
        page = rob.get(f"/submissions/{v2}").text
        assert "Changes against the live version" in page
        # the edited parameters cell is one modified cell, with the inline change marked
        assert "Source changes" in page and 'class="change-modified"' in page
        assert "<del>3</del>" in page and "<ins>5</ins>" in page
    assert approve(g, "rob", v2).status_code == 200
    with g.client("vic") as viewer:
        assert viewer.get("/api/apps/sales-board").json()["live"]["id"] == v2
    # rollback puts v1 back; a viewer may not
    with g.client("vic") as viewer:
        assert viewer.post("/api/apps/sales-board/rollback", json={}).status_code == 403
    with g.client("rita") as rita:
        rb = rita.post("/api/apps/sales-board/rollback", json={"comment": "v2 broke"})
        assert rb.status_code == 200, rb.text
        assert rb.json()["live"]["id"] == sub["id"]


def test_four_eyes(gallery, tmp_path):
    g = gallery
    data = build_archive(tmp_path / "b", make_notebook(meta={"title": "Rob's own"}))
    r = upload(g, "rob", data)
    assert r.status_code == 201, r.text
    vid = r.json()["id"]
    wait_checked(g, vid)
    own = approve(g, "rob", vid)
    assert own.status_code == 403 and own.json()["error"] == "NBA304"
    with g.browser("rob") as rob:
        page = rob.get(f"/submissions/{vid}").text
        assert 'value="approve"' not in page and "four-eyes" in page
        form = rob.post_form(f"/submissions/{vid}/decision", {"decision": "approve"})
        assert form.status_code == 403 and "NBA304" in form.text
    # an admin is a reviewer too, but another person: allowed
    assert approve(g, "adam", vid).status_code == 200


def test_concurrent_decisions_exactly_one_wins(gallery, tmp_path):
    g = gallery
    for i in range(3):
        data = build_archive(tmp_path / f"c{i}", make_notebook(meta={"title": f"Race {i}"}))
        vid = upload(g, "ana", data).json()["id"]
        wait_checked(g, vid)
        barrier = threading.Barrier(2)
        results: dict[str, int] = {}

        def decide(who: str, decision: str, vid: int = vid, barrier=barrier,
                   results=results) -> None:
            with g.client(who) as c:
                barrier.wait()
                r = c.post(f"/api/submissions/{vid}/decision",
                           json={"decision": decision, "comment": who})
                results[who] = r.status_code
                if r.status_code != 200:
                    assert r.json()["error"] in ("NBA303", "NBA305"), r.text

        threads = [threading.Thread(target=decide, args=("rita", "approve")),
                   threading.Thread(target=decide, args=("rob", "reject"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results.values()) == [200, 409], results


def test_withdraw_request_changes_and_comments(gallery, tmp_path):
    g = gallery
    data = build_archive(tmp_path / "w", make_notebook(meta={"title": "Needs work"}))
    vid = upload(g, "alf", data).json()["id"]
    wait_checked(g, vid)
    assert approve(g, "rita", vid, "request_changes", "add a legend").status_code == 200
    with g.client("alf") as alf:
        assert alf.post(f"/api/submissions/{vid}/comments",
                        json={"comment": "will do"}).status_code == 201
        detail = alf.get(f"/api/submissions/{vid}").json()
        assert detail["state"] == "changes_requested" and detail["comment"] == "add a legend"
        assert [c["comment"] for c in detail["comments"]] == ["will do"]
    with g.client("ana") as ana:  # another analyst: not hers
        assert ana.post(f"/api/submissions/{vid}/withdraw", json={}).status_code == 403
    with g.browser("alf") as alf:
        mine = alf.get("/my").text
        assert "add a legend" in mine and "changes requested" in mine
        r = alf.post_form(f"/submissions/{vid}/withdraw", {})
        assert r.status_code == 302 and r.headers["location"] == "/my?done=withdraw"
    with g.client("alf") as alf:
        assert alf.get(f"/api/submissions/{vid}").json()["state"] == "withdrawn"


def _tar_gz(files: dict[str, bytes], *, link: str | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return gzip.compress(raw.getvalue())


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_tampered_and_invalid_uploads_are_refused(gallery, bundles):
    g = gallery
    files = _members(bundles["v1"])
    nb = json.loads(files["app.ipynb"])
    nb["cells"][1]["source"] = "n = 4  # how many\n"
    tampered_file = _tar_gz({**files, "app.ipynb": json.dumps(nb).encode()})
    manifest = json.loads(files["manifest.json"])
    manifest["sha256"] = "0" * 64
    tampered_hash = _tar_gz({**files, "manifest.json": json.dumps(manifest).encode()})
    no_notebook = _tar_gz({k: v for k, v in files.items()
                           if k not in ("app.ipynb", "manifest.json")})
    cases = {
        "file changed": (tampered_file, 400, "NBA202"),
        "content hash changed": (tampered_hash, 400, "NBA202"),
        # (an archive without manifest is a source archive, what `nbapps publish` sends)
        "no app.ipynb": (no_notebook, 400, "NBA206"),
        "bad manifest": (_tar_gz({**files, "manifest.json": b"{not json"}), 400, "NBA201"),
        "path escape": (_tar_gz({**files, "../evil.py": b"x"}), 400, "NBA204"),
        "symlink": (_tar_gz(files, link="data.csv"), 400, "NBA204"),
        "not an archive": (b"PK\x03\x04 this is a zip", 400, "NBA204"),
        "empty": (b"", 400, "NBA204"),
    }
    with catalog_of(g) as (cat, _):
        before = cat.count_versions()
    for label, (data, status, code) in cases.items():
        r = upload(g, "ana", data)
        assert (r.status_code, r.json()["error"]) == (status, code), (label, r.text)
    with catalog_of(g) as (cat, _):
        assert cat.count_versions() == before
    assert not any((g.data_dir / "tmp" / "uploads").iterdir())


def test_notebook_with_errors_is_refused(gallery, tmp_path, bundles):
    g = gallery
    files = _members(bundles["v1"])
    nb = json.loads(files["app.ipynb"])
    nb["cells"][-1]["source"] = 'api_key = "AKIAIOSFODNN7EXAMPLE"\n' \
                                'secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\ns'
    content = json.dumps(nb).encode()
    import hashlib

    from nbapps.bundle import content_hash

    manifest = json.loads(files["manifest.json"])
    for entry in manifest["files"]:
        if entry["path"] == "app.ipynb":
            entry["sha256"] = hashlib.sha256(content).hexdigest()
            entry["size"] = len(content)
    manifest["sha256"] = content_hash(manifest["files"])
    data = _tar_gz({**files, "app.ipynb": content,
                    "manifest.json": json.dumps(manifest).encode()})
    r = upload(g, "ana", data)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "NBA200"
    assert {f["code"] for f in body["details"]["findings"]} & {"NBA050"}


def test_oversized_upload_refused_before_reading(gallery):
    g = gallery
    host, port = urlsplit(g.url).hostname, urlsplit(g.url).port
    token = g.users["ana"].token
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall((f"POST /api/submissions HTTP/1.1\r\nHost: {host}\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: application/gzip\r\n"
                   f"Content-Length: {10 ** 9}\r\n\r\n").encode() + b"x" * 1000)
        answer = s.recv(65536).decode(errors="replace")
    status_line, _, rest = answer.partition("\r\n")
    assert " 413 " in status_line, answer[:300]
    assert '"NBA203"' in rest
    # a chunked body (no Content-Length) is cut off at the limit too
    with g.client("ana") as c:
        def chunks():
            for _ in range(30):
                yield b"z" * 10_000
        r = c.post("/api/submissions", content=chunks())
        assert r.status_code == 413 and r.json()["error"] == "NBA203"


def test_audit_log_export(gallery):
    g = gallery
    with g.browser("adam") as adam:
        r = adam.get("/admin/audit.jsonl")
        assert r.status_code == 200
        events = [json.loads(line) for line in r.text.splitlines()]
        actions = {e["action"] for e in events}
        assert "login" in actions and any(a.startswith("submission") for a in actions)
        page = adam.get("/admin/audit")
        assert page.status_code == 200 and "Export all" in page.text
    with g.client("adam") as c:
        lines = c.get("/api/audit", params={"format": "jsonl"}).text.splitlines()
        assert len(lines) == len(events) or len(lines) >= len(events)
        assert c.get("/api/audit", params={"limit": 2}).json()["items"][0]["id"] >= 1


def test_admin_manages_users_and_tokens(gallery):
    g = gallery
    with g.client("adam") as c:
        r = c.post("/api/users", json={"name": "newbie", "role": "viewer"})
        assert r.status_code == 201 and len(r.json()["password"]) >= 12
        assert c.patch("/api/users/newbie", json={"role": "analyst"}).json()["role"] == "analyst"
        tok = c.post("/api/users/newbie/tokens", json={"label": "ci"}).json()
        assert tok["token"].startswith("nba_")
    with g.client() as anon:
        me = anon.get("/api/me", headers={"Authorization": f"Bearer {tok['token']}"})
        assert me.json()["role"] == "analyst"
    with g.client("adam") as c:
        assert c.delete("/api/users/newbie/tokens",
                        params={"prefix": tok["prefix"]}).status_code == 200
    with g.client() as anon:
        gone = anon.get("/api/me", headers={"Authorization": f"Bearer {tok['token']}"})
        assert gone.status_code == 401 and gone.json()["error"] == "NBA310"
    with g.browser("adam") as adam:
        page = adam.get("/admin/users")
        assert page.status_code == 200 and "newbie" in page.text
        r = adam.post_form("/admin/users/newbie", {"disabled": "1"})
        assert r.status_code == 302


def test_health_metrics_openapi(gallery):
    g = gallery
    with g.client() as anon:
        assert anon.get("/healthz").json() == {"status": "ok", "catalog": True}
    with g.client("adam") as c:
        metrics = c.get("/metrics").text
        assert "nbapps_http_request_duration_seconds_bucket" in metrics
        doc = c.get("/api/openapi.json").json()
        assert doc["openapi"].startswith("3.")
        assert "/api/submissions/{id}/decision" in doc["paths"]
        assert doc["paths"]["/api/submissions"]["post"]["requestBody"]["content"][
            "application/gzip"]
        assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]
