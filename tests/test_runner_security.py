"""Security of a real runner behind the proxy: nothing runs, leaks or is reachable that should not.

One gallery with two apps (``demo`` runs; ``other`` and an unapproved folder hold files that must
stay unreachable) is shared by the module; it is stopped in the fixture's ``finally``.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil
import pytest
from nbformat.v4 import new_code_cell
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.test_runner_fixtures import Gallery, widget_app_notebook, write_bundle

pytestmark = pytest.mark.kernel

SECRET = "nbapps-test-secret-value-4242"
#: a widget cell of the demo app trying to read what app code must not: the gallery's files next
#: to the runtime dir and another app's bundle (the kernel runs in <root>/runtime/runners/<id>/app)
PROBE = """from pathlib import Path
root = Path.cwd().parents[3]
for name in ("secret.txt", "bundles/other/app.ipynb", "runtime/runners"):
    try:
        target = root / name
        target.read_bytes() if target.is_file() else list(target.iterdir())
        print("PROBE", name, "READ")
    except PermissionError:
        print("PROBE", name, "DENIED")
"""


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("sec")
    pwn_dir = root / "pwn"
    pwn_dir.mkdir()
    (root / "secret.txt").write_text("gallery-only")  # stands for the cookie secret, the db
    probe = widget_app_notebook()
    probe.cells.append(new_code_cell(PROBE, metadata={"tags": ["widget"]}))
    demo = write_bundle(root / "bundles" / "demo", probe,
                        files={"helper.py": b"SECRET_CODE = 1\n", "data.csv": b"a,b\n1,2\n",
                               "img/logo.png": b"\x89PNG\r\n\x1a\n"})
    other = write_bundle(root / "bundles" / "other", widget_app_notebook(),
                         files={"other-only.png": b"\x89PNG\r\n\x1a\n"})
    unapproved = write_bundle(root / "bundles" / "unapproved", widget_app_notebook(),
                              files={"draft.png": b"\x89PNG\r\n\x1a\n"})
    mp = pytest.MonkeyPatch()
    mp.setenv("NBAPPS_TEST_SECRET", SECRET)  # in the gallery's environment
    g = Gallery(root, {"demo": demo, "other": other})
    try:
        g.start()
        g.ready("demo")
        g.pwn_dir = pwn_dir  # type: ignore[attr-defined]
        g.unapproved = unapproved  # type: ignore[attr-defined]
        yield g
    finally:
        g.stop()
        mp.undo()


@pytest.fixture
def client():
    with httpx.Client(timeout=60, follow_redirects=False) as c:
        yield c


def kernel_id_of(html: str) -> str:
    m = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', html)
    assert m, "no kernel id in the page"
    return m.group(1)


def kmsg(msg_type: str, content: dict | None = None, channel: str = "shell",
         metadata: dict | None = None) -> str:
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "viewer",
                   "session": "s-" + uuid.uuid4().hex[:8], "version": "5.3",
                   "date": datetime.now(timezone.utc).isoformat()},
        "parent_header": {}, "metadata": metadata or {}, "content": content or {},
        "channel": channel,
        "buffers": [],
    })


async def _reply(conn, msg_type: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
        assert raw is not None, "connection closed"
        msg = json.loads(raw)
        if msg["header"]["msg_type"] == msg_type:
            return msg
    raise AssertionError(f"no {msg_type}")


def _execute_attack(url: str, headers: dict, target: Path) -> None:
    code = f"open({str(target)!r}, 'w').write('pwned')"

    async def run() -> None:
        conn = await websocket_connect(HTTPRequest(url, headers=headers))
        conn.write_message(kmsg("execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}))
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply")  # the connection works and the kernel answers
        await asyncio.sleep(2.0)  # time for a (wrongly) accepted execute_request to run
        conn.close()

    asyncio.run(run())


def test_viewer_cannot_execute_code_through_the_proxy(gallery, client):
    page = client.get(gallery.url("/apps/demo/"))
    assert page.status_code == 200
    kid = kernel_id_of(page.text)
    target = gallery.pwn_dir / "via-proxy"
    _execute_attack(gallery.ws_url(f"/apps/demo/api/kernels/{kid}/channels?session_id=x"), {},
                    target)
    assert not target.exists()


def test_standalone_voila_itself_refuses_execute_requests(gallery, client):
    """Even with the runner's token, straight to Voilà: nothing is executed (decision 1)."""
    page = client.get(gallery.url("/apps/demo/"))
    kid = kernel_id_of(page.text)
    runner = gallery.supervisor.runner_for("demo", kid)
    target = gallery.pwn_dir / "direct"
    _execute_attack(runner.ws_url(f"api/kernels/{kid}/channels", "session_id=y"),
                    runner.auth_headers, target)
    assert not target.exists()


@pytest.mark.parametrize("path", [
    "app.ipynb", "executed.ipynb", "manifest.json", "helper.py", "data.csv",
    "voila/files/app.ipynb", "voila/files/executed.ipynb", "voila/files/manifest.json",
    "voila/files/helper.py", "voila/files/data.csv", "voila/files/nbapps-default.ipynb",
    "voila/files/../other/other-only.png", "voila/files/%2e%2e/%2e%2e/other-only.png",
    "voila/render/app.ipynb", "voila/render/nbapps-default.ipynb", "voila/tree",
    "voila/tree/", "voila/api/contents", "voila/api/contents/app.ipynb", "api/contents",
    "api/kernels", "api/kernels/", "api/sessions", "api/kernelspecs", "tree", "notebooks/app.ipynb",
    "files/app.ipynb", "edit/app.ipynb", "lab", "login", "logout", "voila/query/x",
    "voila/execution/x", "nbapps-custom.ipynb", "voila/templates/../../etc/passwd",
])
def test_sources_and_other_files_are_unreachable(gallery, client, path):
    r = client.get(gallery.url(f"/apps/demo/{path}"))
    assert r.status_code in (403, 404), (path, r.status_code)
    for marker in (b'"cells"', b"SECRET_CODE", b"a,b", b'"parameters"', b"PNG"):
        assert marker not in r.content, (path, marker)


def test_other_apps_and_unapproved_bundles_are_not_served(gallery, client):
    assert client.get(gallery.url("/apps/demo/voila/files/img/logo.png")).status_code == 200
    assert client.get(gallery.url("/apps/demo/voila/files/other-only.png")).status_code == 404
    assert client.get(gallery.url("/apps/unapproved/")).status_code == 404
    assert client.get(gallery.url("/apps/demo/voila/files/draft.png")).status_code == 404


def test_runner_refuses_requests_without_its_token(gallery, client):
    runner = gallery.supervisor.runner_for("demo")
    page_path = runner.variant_path(False)
    for headers in ({}, {"Authorization": "token wrong"}):
        r = client.get(runner.url(page_path), headers=headers)
        assert r.status_code in (302, 403), r.status_code
        assert "login" in r.headers.get("location", "login") and b"RESULT" not in r.content
    r = client.get(runner.url(page_path, "token=wrong"))
    assert r.status_code in (302, 403)
    ok = client.get(runner.url(page_path), headers=runner.auth_headers)
    assert ok.status_code == 200 and b"RESULT" in ok.content
    ws_url = runner.ws_url(f"api/kernels/{kernel_id_of(ok.text)}/channels")

    async def no_token() -> int:
        try:
            conn = await websocket_connect(ws_url)
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    assert asyncio.run(no_token()) in (302, 403)


def test_token_never_reaches_the_browser(gallery, client):
    runner = gallery.supervisor.runner_for("demo")
    token = runner.token.encode()
    responses = [client.get(gallery.url(p)) for p in (
        "/apps/demo/", "/apps/demo/?n=4", "/apps/demo/voila/static/voila.js",
        "/apps/demo/voila/files/app.ipynb", "/apps/demo/?token=x", "/apps/demo",
    )]
    page = responses[0]
    responses.append(client.get(gallery.url(f"/apps/demo/api/kernels/{kernel_id_of(page.text)}")))
    for r in responses:
        assert token not in r.content
        assert all(token not in v.encode() for v in r.headers.values())
        assert "set-cookie" not in r.headers


def test_gallery_environment_does_not_reach_notebook_code(gallery, client):
    page = client.get(gallery.url("/apps/demo/"))
    assert "SECRET None" in page.text and SECRET not in page.text
    runner = gallery.supervisor.runner_for("demo")
    procs = [psutil.Process(runner.pid), *psutil.Process(runner.pid).children(recursive=True)]
    assert len(procs) >= 2
    for p in procs:  # Voilà and every kernel: the secret is not in their environment
        assert "NBAPPS_TEST_SECRET" not in p.environ()


def test_app_code_cannot_read_the_gallerys_files(gallery, client):
    """The runner and its kernels are confined by Landlock (nbapps.sandbox)."""
    from nbapps import sandbox

    if not sandbox.available():
        pytest.skip("Landlock is not available on this kernel: runners start unconfined")
    page = client.get(gallery.url("/apps/demo/"))
    assert page.status_code == 200
    for name in ("secret.txt", "bundles/other/app.ipynb", "runtime/runners"):
        assert f"PROBE {name} DENIED" in page.text, name
    assert "gallery-only" not in page.text


def test_app_folder_is_a_read_only_copy(gallery):
    runner = gallery.supervisor.runner_for("demo")
    files = [p for p in runner.app_dir.rglob("*") if p.is_file()]
    assert {"app.ipynb", "manifest.json", "nbapps-default.ipynb", "nbapps-custom.ipynb"} <= {
        p.name for p in files}
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o555 for p in runner.app_dir.rglob("*") if p.is_dir())
    assert runner.app_dir.resolve() != gallery.apps["demo"].resolve()
    assert not (runner.config_dir / "voila.py").exists(), "token file left on disk"


def test_template_override_cannot_hang_the_runner(gallery, client):
    """?template=nonexistent: refused by the proxy (400) and ignored by the runner's config."""
    assert client.get(gallery.url("/apps/demo/?template=nonexistent")).status_code == 400
    runner = gallery.supervisor.runner_for("demo")
    t0 = time.monotonic()
    r = client.get(runner.url(runner.variant_path(False), "template=nonexistent&theme=dark"),
                   headers=runner.auth_headers, timeout=60)
    assert r.status_code == 200 and b"RESULT" in r.content
    assert time.monotonic() - t0 < 45


def test_runner_uses_the_sliced_poll_kernel_classes(gallery):
    """The missed wake-up fix is what Voilà's executions use (status written in the runner)."""
    status = gallery.supervisor.runner_for("demo").read_status()
    assert status["client_classes"] == ["nbapps.kernel.NbappsKernelClient"]
    assert status["kernel_manager_classes"] == ["nbapps.kernel.NbappsServerKernelManager"]
    from nbapps.kernel import NbappsKernelClient, SlicedPollChannel

    assert NbappsKernelClient.shell_channel_class.default_value is SlicedPollChannel
    assert NbappsKernelClient.iopub_channel_class.default_value is SlicedPollChannel
