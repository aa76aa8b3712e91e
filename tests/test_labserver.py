"""The lab server extension's endpoints in a real Jupyter server (pytest-jupyter).

pytest-jupyter's fixtures are imported into this module only (not registered as a plugin), so
its autouse fixtures (event loop, server cleanup, isolated Jupyter paths) touch no other test.
Tests are plain functions that drive the server's loop with ``run(...)``.
"""
from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psutil
import pytest
from jupyter_server.auth.authorizer import Authorizer
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures, scoped to this module
from tornado.web import RequestHandler

from nbapps.labserver.credentials import CredentialStore, mask_token, normalize_gallery_url
from nbapps.labserver.handlers import ROUTES
from tests.nbfactory import make_notebook, write_notebook

SAMPLE_ID = "0" * 32
TOKEN = "nba_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v"
GALLERY = "http://gallery.invalid:8866"
SLOW_WIDGET = "import time\ntime.sleep(60)\nimport ipywidgets as w\nw.IntSlider()"


@pytest.fixture
def lab_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "nbapps-lab-data"


@pytest.fixture
def jp_server_config(lab_data_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nbapps.labserver": True}},
        "NbappsLabApp": {"data_dir": str(lab_data_dir), "cell_timeout": 60.0},
    }


@pytest.fixture
def run(jp_asyncio_loop):
    return jp_asyncio_loop.run_until_complete


@pytest.fixture
def lab(jp_serverapp):
    return jp_serverapp.web_app.settings["nbapps_lab"]


@pytest.fixture
def api(jp_fetch, run):
    """``api(method, *path, body=..., params=..., headers=...)`` → (status, JSON)."""

    def call(method: str, *parts: str, body: Any = None, params: dict | None = None,
             headers: dict | None = None) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": params, "headers": headers,
                              "raise_error": False}
        if method in ("POST", "PUT", "PATCH"):
            kw["body"] = json.dumps(body if body is not None else {})
        elif method == "DELETE":
            kw["allow_nonstandard_methods"] = True
        r = run(jp_fetch("nbapps", *parts, **kw))
        text = r.body.decode() if r.body else ""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return r.code, data

    # the server runs on this thread's loop: wait by running the loop, never with time.sleep
    call.pause = lambda seconds: run(asyncio.sleep(seconds))  # type: ignore[attr-defined]
    return call


def wait_job(api, kind: str, job_id: str, timeout: float = 120,
             until: tuple[str, ...] = ("succeeded", "failed", "cancelled")) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, job = api("GET", kind, job_id)
        assert code == 200, job
        if job["state"] in until:
            return job
        assert time.monotonic() < deadline, f"job still {job['state']}: {job['message']}"
        api.pause(0.2)


def put(root: Path, name: str, **kw: Any) -> str:
    write_notebook(make_notebook(**kw), root / name)
    return name


# -- packaging --------------------------------------------------------------------------------


def test_extension_points_and_config_file():
    from nbapps.labserver import _jupyter_server_extension_points
    from nbapps.labserver.app import NbappsLabApp

    assert _jupyter_server_extension_points() == [{"module": "nbapps.labserver",
                                                    "app": NbappsLabApp}]
    root = Path(__file__).resolve().parent.parent
    conf = json.loads((root / "jupyter-config/jupyter_server_config.d/nbapps.json").read_text())
    assert conf == {"ServerApp": {"jpserver_extensions": {"nbapps.labserver": True}}}
    # one version: the Python package's comes from extension/package.json
    pkg = json.loads((root / "extension/package.json").read_text())
    from importlib.metadata import version

    assert version("nbapps") == pkg["version"]


def test_build_hook_skips_up_to_date_output_and_installs_only_when_needed(tmp_path):
    from extension.labext_build import needs_build, needs_install

    ext, out = tmp_path / "extension", tmp_path / "labextension"
    (ext / "src").mkdir(parents=True)
    (ext / "src" / "index.ts").write_text("x")
    (ext / "package.json").write_text("{}")
    assert needs_build(ext, out) and needs_install(ext)
    (out / "static").mkdir(parents=True)
    (ext / "node_modules").mkdir()
    for f in (out / "package.json", out / "static" / "style.js",
              ext / "node_modules" / ".yarn-state.yml"):
        f.write_text("{}")
    # explicit mtimes: file systems stamp writes with a coarse clock (a few ms), so files written
    # one after the other can carry the same time
    past = time.time() - 100
    for f in (ext / "src" / "index.ts", ext / "package.json"):
        os.utime(f, (past, past))
    for f in (out / "package.json", out / "static" / "style.js",
              ext / "node_modules" / ".yarn-state.yml"):
        os.utime(f, (past + 50, past + 50))
    assert not needs_build(ext, out) and not needs_install(ext)
    (ext / "style").mkdir()
    (ext / "style" / "base.css").write_text("a {}")  # any input newer than the output
    assert needs_build(ext, out) and not needs_install(ext)
    (ext / "package.json").write_text('{"dependencies": {}}')
    os.utime(ext / "package.json", (past + 60, past + 60))
    assert needs_install(ext)


def test_build_hook_fetches_the_widget_renderer_a_clone_lacks(tmp_path, monkeypatch):
    """A clone has no ``nbapps/server/static/widgets`` (git-ignored, ``make widgets``): the
    install's build hook fetches the pinned renderer so ``pip install .`` ships it, says so
    without failing when it cannot, and does nothing when it is there."""
    import shutil

    from extension.labext_build import ensure_widget_renderer

    root = Path(__file__).resolve().parent.parent
    (tmp_path / "scripts").mkdir()
    shutil.copy2(root / "scripts" / "widget_embed.py", tmp_path / "scripts")
    (tmp_path / "nbapps" / "server" / "static").mkdir(parents=True)
    target = tmp_path / "nbapps" / "server" / "static" / "widgets"
    with monkeypatch.context() as m:  # no npm: a warning, the install goes on
        m.setenv("PATH", str(tmp_path))
        assert ensure_widget_renderer(tmp_path) is False
    assert not target.exists()
    assert ensure_widget_renderer(tmp_path) is True
    embed = (target / "embed.js").read_bytes()
    assert len(embed) > 100_000 and b"jupyter" in embed
    stamp = (target / "VERSION").stat().st_mtime_ns
    with monkeypatch.context() as m:  # there already: no npm needed, nothing rewritten
        m.setenv("PATH", str(tmp_path))
        assert ensure_widget_renderer(tmp_path) is True
    assert (target / "VERSION").stat().st_mtime_ns == stamp


# -- contract and settings ----------------------------------------------------------------------


def test_contract_of_unsaved_parameters_cell(api):
    code, data = api("POST", "contract", body={
        "source": 'n = 3  # how many\nregion = "EU"  # sales region\nx = n + 1\n',
        "constraints": {"region": {"choices": ["EU", "US"]}}})
    assert code == 200
    assert [(p["name"], p["type"], p["default"], p["help"]) for p in data["parameters"]] == [
        ("n", "int", 3, "how many"), ("region", "str", "EU", "sales region")]
    assert data["parameters"][1]["choices"] == ["EU", "US"]
    assert data["problems"][0]["line"] == 3
    code, data = api("POST", "contract", body={"source": 7})
    assert code == 400 and data["error"] == "NBA100"


def test_token_is_stored_privately_and_never_returned(api, lab_data_dir):
    code, data = api("POST", "settings", body={"gallery_url": GALLERY + "/", "token": TOKEN})
    assert code == 200
    assert TOKEN not in json.dumps(data)
    assert data["gallery_url"] == GALLERY
    assert data["token"] == {"set": True, "masked": TOKEN[:12] + "…"}
    path = lab_data_dir / "lab-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    assert CredentialStore(path).get(GALLERY) == TOKEN
    code, data = api("GET", "settings", params={"gallery": GALLERY.upper()})
    assert code == 200 and data["token"]["set"] and TOKEN not in json.dumps(data)
    # another gallery never gets this token
    code, data = api("GET", "settings", params={"gallery": "http://elsewhere:1"})
    assert data["token"] == {"set": False, "masked": None}
    code, data = api("DELETE", "settings", params={"gallery": GALLERY})
    assert code == 200 and data["token"]["set"] is False
    assert CredentialStore(path).get(GALLERY) is None


@pytest.mark.parametrize("body,code", [
    ({"gallery_url": "ftp://x", "token": TOKEN}, "NBA380"),
    ({"gallery_url": "http://u:p@x", "token": TOKEN}, "NBA380"),
    ({"gallery_url": GALLERY, "token": "has space"}, "NBA381"),
    ({"gallery_url": GALLERY, "token": ""}, "NBA381"),
])
def test_bad_settings_are_refused(api, body, code):
    status, data = api("POST", "settings", body=body)
    assert status == 400 and data["error"] == code


def test_credential_store_repairs_loose_permissions(tmp_path):
    store = CredentialStore(tmp_path / "c.json")
    store.set("https://G.example/base/", TOKEN)
    os.chmod(store.path, 0o644)
    assert store.get("https://g.example/base") == TOKEN
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert normalize_gallery_url("HTTPS://G.example:443/x/") == "https://g.example:443/x"
    assert mask_token("short") == "…" and TOKEN[12:] not in mask_token(TOKEN)


# -- notebook paths -----------------------------------------------------------------------------


def test_paths_outside_root_hidden_or_not_notebooks(api, jp_root_dir, tmp_path):
    put(jp_root_dir, "ok.ipynb")
    write_notebook(make_notebook(), jp_root_dir / ".hidden" / "h.ipynb")
    write_notebook(make_notebook(), tmp_path / "outside.ipynb")
    (jp_root_dir / "notes.txt").write_text("x")
    cases = {"../outside.ipynb": 404, "sub/../../outside.ipynb": 404, ".hidden/h.ipynb": 404,
             "missing.ipynb": 404, "notes.txt": 400, "/etc/passwd": 400, "": 400}
    for path, expected in cases.items():
        code, data = api("POST", "validate", body={"path": path, "execute": False})
        assert code == expected, (path, data)
        assert data["error"] in ("NBA105", "NBA100")
    code, data = api("POST", "validate", body={"path": "/ok.ipynb", "execute": False})
    assert code == 202


# -- validation jobs ----------------------------------------------------------------------------


def test_static_validation_reports_findings_with_cells(api, jp_root_dir):
    name = put(jp_root_dir, "bad.ipynb", widget=None, meta={"title": ""})
    code, data = api("POST", "validate", body={"path": name, "execute": False})
    assert code == 202 and data["joined"] is False
    job = wait_job(api, "validate", data["job"]["id"])
    assert job["state"] == "succeeded", job
    report = job["result"]["report"]
    assert report["ok"] is False
    codes = {f["code"] for f in report["findings"]}
    assert {"NBA030", "NBA031"} <= codes
    assert all(f["hint"] for f in report["findings"])
    assert report["parameters"][0]["name"] == "n"
    # the latest job of a notebook can be looked up by path
    code, latest = api("GET", "validate", params={"path": name})
    assert code == 200 and latest["id"] == job["id"]
    code, missing = api("GET", "validate", SAMPLE_ID)
    assert code == 404 and missing["error"] == "NBA302"


@pytest.mark.kernel
def test_validation_runs_the_notebook(api, jp_root_dir):
    name = put(jp_root_dir, "good.ipynb")
    code, data = api("POST", "validate", body={"path": name})
    job = wait_job(api, "validate", data["job"]["id"])
    report = job["result"]["report"]
    assert job["state"] == "succeeded" and report["ok"] is True, report["findings"]
    assert report["runs"] and report["runs"][0]["label"] == "default"
    assert job["step"] == "validate" and job["message"] == "Done" and job["elapsed"] > 0


@pytest.mark.kernel
def test_second_request_joins_and_a_changed_notebook_replaces(api, jp_root_dir, lab):
    name = put(jp_root_dir, "slow.ipynb", widget=SLOW_WIDGET)
    _, first = api("POST", "validate", body={"path": name})
    _, second = api("POST", "validate", body={"path": name})
    assert second["joined"] is True and second["job"]["id"] == first["job"]["id"]
    assert lab.jobs.get(first["job"]["id"]).joined == 1
    # other options are another job: the running one is replaced
    put(jp_root_dir, name, widget=SLOW_WIDGET + "\n# edited")
    _, third = api("POST", "validate", body={"path": name})
    assert third["joined"] is False and third["job"]["replaces"] == first["job"]["id"]
    old = wait_job(api, "validate", first["job"]["id"], timeout=30)
    assert old["state"] == "cancelled"
    code, _ = api("DELETE", "validate", third["job"]["id"])
    assert code == 202
    assert wait_job(api, "validate", third["job"]["id"], timeout=30)["state"] == "cancelled"


@pytest.mark.kernel
def test_cancel_stops_the_worker_and_its_kernel(api, jp_root_dir, lab):
    name = put(jp_root_dir, "cancel.ipynb", widget=SLOW_WIDGET)
    _, data = api("POST", "validate", body={"path": name})
    job_id = data["job"]["id"]
    job = lab.jobs.get(job_id)
    deadline = time.monotonic() + 60
    family: list[psutil.Process] = []
    while time.monotonic() < deadline:  # wait until the kernel runs the slow cell
        if job.pid:
            family = psutil.Process(job.pid).children(recursive=True)
            if any("ipykernel" in " ".join(p.cmdline()) for p in family):
                break
        api.pause(0.2)
    assert family, "the kernel never started"
    worker = psutil.Process(job.pid)
    started = time.monotonic()
    code, snap = api("DELETE", "validate", job_id)
    assert code == 202 and snap["message"] == "Cancelling…"
    done = wait_job(api, "validate", job_id, timeout=30)
    assert done["state"] == "cancelled" and done["result"] is None
    assert time.monotonic() - started < 15
    gone, alive = psutil.wait_procs([worker, *family], timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    # cancelling a finished job changes nothing
    code, snap = api("DELETE", "validate", job_id)
    assert code == 202 and snap["state"] == "cancelled"


# -- publishing ---------------------------------------------------------------------------------


def test_publish_needs_a_token_for_that_gallery(api, jp_root_dir):
    name = put(jp_root_dir, "p.ipynb")
    code, data = api("POST", "publish", body={"path": name, "gallery_url": GALLERY})
    assert code == 400 and data["error"] == "NBA381"
    code, data = api("POST", "publish", body={"path": name})
    assert code == 400 and data["error"] == "NBA380"


def test_publish_blocked_by_findings_never_contacts_the_gallery(api, jp_root_dir):
    api("POST", "settings", body={"gallery_url": GALLERY, "token": TOKEN})
    name = put(jp_root_dir, "blocked.ipynb", kernelspec=None)  # NBA010: not even run
    code, data = api("POST", "publish", body={"path": name, "gallery_url": GALLERY})
    assert code == 202
    assert "token" not in json.dumps(data) and TOKEN not in json.dumps(data)
    job = wait_job(api, "publish", data["job"]["id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["outcome"] == "blocked"
    assert "NBA010" in {f["code"] for f in job["result"]["report"]["findings"]}


def follow_submission(api, gallery: str, sub_id: int, timeout: float = 240) -> dict[str, Any]:
    """Poll ``/nbapps/submissions/<id>`` (as the panel does) until the gallery's check ends."""
    deadline = time.monotonic() + timeout
    while True:
        code, detail = api("GET", "submissions", str(sub_id), params={"gallery": gallery})
        assert code == 200, detail
        if detail["state"] != "validating":
            return detail
        assert time.monotonic() < deadline, f"still validating: {detail.get('check')}"
        api.pause(0.5)


@pytest.mark.kernel
def test_publish_to_a_real_gallery_and_list_submissions(api, jp_root_dir, tmp_path,
                                                         lab_data_dir):
    pytest.importorskip("nbapps.bundle")
    from tests.server_harness import thread_gallery

    with thread_gallery(tmp_path / "gallery") as g:
        token = g.users["ana"].token
        api("POST", "settings", body={"gallery_url": g.url, "token": token})
        name = put(jp_root_dir, "sales.ipynb", meta={"title": "Lab sales"})
        # the first publish names the app (the panel records it in the notebook, then saves)
        code, ident = api("GET", "app", params={"path": name, "gallery": g.url,
                                                "title": "Lab sales"})
        assert code == 200 and ident == {"slug": "lab-sales", "source": "new"}, ident
        put(jp_root_dir, name, meta={"title": "Lab sales", "slug": ident["slug"]})
        code, data = api("POST", "publish", body={"path": name, "gallery_url": g.url})
        assert code == 202
        job = wait_job(api, "publish", data["job"]["id"], timeout=180)
        assert job["state"] == "succeeded", job
        assert job["result"]["outcome"] == "submitted", job["result"]
        sub = job["result"]["submission"]
        assert sub["app"] == "lab-sales" and sub["url"].startswith(g.url)
        assert sub["state"] in ("validating", "submitted"), sub
        # the panel follows the gallery's own check to its verdict
        detail = follow_submission(api, g.url, sub["id"])
        assert detail["state"] == "submitted", json.dumps(detail.get("check"))[:3000]
        if "check" in detail:  # a gallery that runs submissions itself
            assert detail["check"]["state"] == "passed", detail["check"]
        with g.client("rita") as c:
            r = c.post(f"/api/submissions/{sub['id']}/decision",
                       json={"decision": "request_changes", "comment": "Add a legend"})
            assert r.status_code == 200, r.text
            r = c.post(f"/api/submissions/{sub['id']}/comments", json={"comment": "And units"})
            assert r.status_code == 201, r.text
        # the reason reaches the analyst: the decision with its comment, and the comment thread
        code, subs = api("GET", "submissions", params={"path": name, "gallery": g.url})
        assert code == 200, subs
        assert subs["app"] == "lab-sales"
        item = subs["items"][0]
        assert item["id"] == sub["id"] and item["state"] == "changes_requested"
        assert item["comment"] == "Add a legend"
        decisions = [(r["actor"], r["action"], r["comment"]) for r in item["reviews"]
                     if r["action"] == "request_changes"]
        assert decisions == [("rita", "request_changes", "Add a legend")]
        assert [(c["author"], c["comment"]) for c in item["comments"]] == [("rita", "And units")]
        assert "manifest" not in item
        code, one = api("GET", "submissions", str(sub["id"]), params={"gallery": g.url})
        assert code == 200 and one["reviews"] == item["reviews"]

        # another notebook with the same title is another app: it lists none of these
        other = put(jp_root_dir, "copy.ipynb", meta={"title": "Lab sales"})
        code, subs = api("GET", "submissions", params={"path": other, "gallery": g.url})
        assert code == 200 and subs == {"gallery_url": g.url, "app": None, "items": []}
        code, ident = api("GET", "app", params={"path": other, "gallery": g.url,
                                                "title": "Lab sales"})
        assert ident == {"slug": "lab-sales-2", "source": "new"}, ident
        # ... while the published one finds its app by the slug it records, records or not
        (lab_data_dir / "lab-submissions.json").unlink()
        code, again = api("GET", "submissions", params={"path": name, "gallery": g.url})
        assert code == 200 and [i["id"] for i in again["items"]] == [sub["id"]]
        # a notebook published before slugs were recorded (or from the CLI) keeps its app:
        # the newest submission of that name came from a file of the same name
        put(jp_root_dir, name, meta={"title": "Lab sales"})
        code, ident = api("GET", "app", params={"path": name, "gallery": g.url,
                                                "title": "Lab sales"})
        assert ident == {"slug": "lab-sales", "source": "gallery"}, ident
        # bad input
        code, err = api("GET", "submissions", params={"path": name, "gallery": g.url,
                                                      "app": "Not A Slug"})
        assert code == 400 and err["error"] == "NBA100"
        code, err = api("GET", "submissions", "999999", params={"gallery": g.url})
        assert code == 404, err


def test_submission_endpoints_need_a_token_for_that_gallery(api, jp_root_dir):
    name = put(jp_root_dir, "t.ipynb")
    for parts, params in ((("submissions", "5"), {}), (("app",), {"path": name}),
                          (("submissions",), {"path": name})):
        code, data = api("GET", *parts, params={"gallery": GALLERY, **params})
        assert code == 400 and data["error"] == "NBA381", (parts, data)


def test_publish_sends_the_recorded_app_slug(jp_root_dir):
    from nbapps.labserver.gallery import notebook_slug

    path = jp_root_dir / put(jp_root_dir, "s.ipynb", meta={"title": "T", "slug": "my-app"})
    assert notebook_slug(path) == "my-app"
    write_notebook(make_notebook(meta={"title": "T", "slug": "Bad Slug!"}), path)
    assert notebook_slug(path) is None
    (jp_root_dir / "broken.ipynb").write_text("{")
    assert notebook_slug(jp_root_dir / "broken.ipynb") is None


# -- authentication and authorization ---------------------------------------------------------


def _endpoints() -> list[tuple[str, str]]:
    """Every (method, path) the extension serves, from its route table."""
    out = []
    for pattern, handler in ROUTES:
        path = pattern.replace("([0-9a-f]{32})", SAMPLE_ID).replace("([0-9]{1,18})", "7")
        path = path.lstrip("/")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if getattr(handler, method.lower()) is not getattr(RequestHandler, method.lower()):
                out.append((method, path))
    return out


def test_route_table_covers_the_documented_endpoints():
    endpoints = set(_endpoints())
    assert {("POST", "nbapps/validate"), ("GET", f"nbapps/validate/{SAMPLE_ID}"),
            ("DELETE", f"nbapps/validate/{SAMPLE_ID}"), ("POST", "nbapps/publish"),
            ("GET", f"nbapps/publish/{SAMPLE_ID}"), ("DELETE", f"nbapps/publish/{SAMPLE_ID}"),
            ("GET", "nbapps/submissions"), ("GET", "nbapps/submissions/7"),
            ("GET", "nbapps/app"), ("POST", "nbapps/settings")} <= endpoints
    assert len(endpoints) == 15


def test_every_endpoint_refuses_unauthenticated_requests(jp_fetch, run):
    for method, path in _endpoints():
        kw: dict[str, Any] = {"method": method, "raise_error": False,
                              "headers": {"Authorization": ""}}
        if method in ("POST", "PUT", "PATCH"):
            kw["body"] = "{}"
        if method == "DELETE":
            kw["allow_nonstandard_methods"] = True
        r = run(jp_fetch(path, **kw))
        assert r.code in (401, 403), (method, path, r.code)


class DenyNbapps(Authorizer):
    """Allows everything but the ``nbapps`` resource; records what it was asked."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource):  # type: ignore[override]
        DenyNbapps.asked.append((action, resource))
        return resource != "nbapps"


@pytest.fixture
def deny_config(jp_server_config):
    jp_server_config["ServerApp"]["authorizer_class"] = DenyNbapps
    DenyNbapps.asked = []
    return jp_server_config


def test_authorizer_is_asked_for_every_endpoint(deny_config, jp_fetch, run):
    for method, path in _endpoints():
        kw: dict[str, Any] = {"method": method, "raise_error": False}
        if method in ("POST", "PUT", "PATCH"):
            kw["body"] = "{}"
        if method == "DELETE":
            kw["allow_nonstandard_methods"] = True
        r = run(jp_fetch(path, **kw))
        assert r.code == 403, (method, path, r.code)
    asked = {a for a, r in DenyNbapps.asked if r == "nbapps"}
    assert asked == {"read", "write", "execute"}
    # running a notebook is an "execute" action
    assert DenyNbapps.asked.count(("execute", "nbapps")) == 2
    # the rest of the server still works for this user
    r = run(jp_fetch("api", "contents", raise_error=False))
    assert r.code == 200


def _cookies(response) -> dict[str, str]:
    out = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        out[name] = rest.split(";", 1)[0]
    return out


def test_cookie_requests_need_the_xsrf_token(jp_serverapp, jp_fetch, run):
    def fetch(path: str, **kw: Any):
        headers = {"Authorization": "", **kw.pop("headers", {})}  # no token: cookies only
        return run(jp_fetch(path, headers=headers, raise_error=False, follow_redirects=False,
                            **kw))

    cookies = _cookies(fetch("login"))
    xsrf = cookies["_xsrf"]
    form = urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": xsrf})
    r = fetch("login", method="POST", body=form, headers={"Cookie": f"_xsrf={xsrf}"})
    assert r.code == 302, r.code
    cookies.update(_cookies(r))
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = json.dumps({"gallery_url": GALLERY, "token": TOKEN})

    def post(headers: dict[str, str]) -> int:
        return fetch("nbapps/settings", method="POST", body=body,
                     headers={"Cookie": jar, **headers}).code

    assert fetch("nbapps/settings", headers={"Cookie": jar}).code == 200  # the cookie logs in
    assert post({}) == 403  # ... but a cookie POST without the XSRF token is refused
    assert post({"X-XSRFToken": "forged"}) == 403
    assert post({"X-XSRFToken": xsrf}) == 200
