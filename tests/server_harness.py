"""Real gallery servers for tests: in a thread (fast) or a subprocess (for signals, SIGKILL).

Every server listens on a free loopback port (``--port=0``) and is always stopped (context
managers / fixtures with ``finally``). Users of every role are created with passwords and API
tokens; :class:`Browser` logs in through the real login form and sends the XSRF token like a
browser's form would.
"""
from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nbformat

from nbapps.catalog import Catalog, open_catalog
from nbapps.store import open_store
from tests.nbfactory import make_notebook

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("viewer", "analyst", "reviewer", "admin")
#: user name per role (plus a second analyst and reviewer for four-eyes tests)
USERS = {"vic": "viewer", "ana": "analyst", "alf": "analyst", "rita": "reviewer",
         "rob": "reviewer", "adam": "admin"}
ROLE_USER = {"viewer": "vic", "analyst": "ana", "reviewer": "rita", "admin": "adam"}
PASSWORD = "correct-horse-{}"


@dataclass
class Account:
    name: str
    role: str
    password: str
    token: str


def make_users(cat: Catalog, users: dict[str, str] | None = None) -> dict[str, Account]:
    out = {}
    for name, role in (users or USERS).items():
        password = PASSWORD.format(name)
        cat.create_user(name, role, password, actor="test")
        token, _ = cat.create_token(name, actor="test", label="tests")
        out[name] = Account(name, role, password, token)
    return out


def new_data_dir(folder: Path) -> tuple[Path, str, dict[str, Account]]:
    """``folder/data`` with a SQLite catalog holding the test users: (data dir, URL, users)."""
    data_dir = folder / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    return data_dir, db_url, seed_users(db_url)


def seed_users(db_url: str) -> dict[str, Account]:
    cat = open_catalog(db_url)
    try:
        return make_users(cat)
    finally:
        cat.close()


# -- seeding without the upload path (matrix, benchmark) ------------------------------------------

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a3a1b3c90000000049454e44ae426082")


def archive_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seed_version(cat: Catalog, store: Any, *, slug: str, submitter: str, title: str,
                 description: str = "An app seeded by a test.", tags: tuple[str, ...] = ("test",),
                 nb: nbformat.NotebookNode | None = None, thumbnail: bool = True,
                 salt: str = "") -> Any:
    """Store a small archive (manifest + notebook + thumbnail) and record it as submitted."""
    nb = nb or make_notebook(meta={"title": title, "description": description,
                                   "tags": list(tags)})
    nb_bytes = nbformat.writes(nb).encode()
    files = {"app.ipynb": nb_bytes}
    if thumbnail:
        files["thumbnail.png"] = PNG_1x1
    manifest = {"notebook": "app.ipynb", "title": title, "description": description,
                "tags": list(tags), "thumbnail": "thumbnail.png" if thumbnail else None,
                "parameters": [{"name": "n", "type": "int", "default": 3, "help": "how many"},
                               {"name": "label", "type": "str", "default": "x",
                                "help": "a label", "choices": ["x", "y"]}],
                "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()},
                "salt": salt}
    files["manifest.json"] = json.dumps(manifest).encode()
    data = archive_of(files)
    sha = hashlib.sha256(data).hexdigest()
    key = store.put(sha, data)
    # seeded straight into the catalog, the values count as the gallery's own (as if its check
    # had made them): the thumbnail is a blob of the store, like a check's
    thumb = f"blob:{store.put_blob(PNG_1x1)}.png" if thumbnail else None
    return cat.submit(slug=slug, title=title, description=description, tags=tags, sha256=sha,
                      manifest=manifest, store_key=key, submitter=submitter,
                      thumbnail=thumb, size=len(data))


# -- servers ---------------------------------------------------------------------------------------

@dataclass
class Gallery:
    url: str
    data_dir: Path
    db_url: str
    users: dict[str, Account] = field(default_factory=dict)
    server: Any = None
    process: subprocess.Popen[bytes] | None = None

    def client(self, who: str | None = None, **kw: Any) -> httpx.Client:
        """An httpx client; ``who`` = user name → authenticated by Bearer token."""
        headers = {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.users[who].token}"
        return httpx.Client(base_url=self.url, headers=headers, follow_redirects=False,
                            timeout=60, **kw)

    def browser(self, who: str | None = None) -> Browser:
        b = Browser(httpx.Client(base_url=self.url, follow_redirects=False, timeout=60))
        if who is not None:
            b.login(who, self.users[who].password)
        return b


class Browser:
    """A cookie-keeping client that behaves like a browser submitting forms."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def xsrf(self) -> str:
        token = self.http.cookies.get("_xsrf")
        if not token:
            r = self.http.get("/login")
            m = re.search(r'name="_xsrf" value="([^"]+)"', r.text)
            token = self.http.cookies.get("_xsrf") or (m.group(1) if m else None)
        assert token, "no XSRF token"
        return token

    def login(self, name: str, password: str) -> httpx.Response:
        r = self.http.post("/login", data={"username": name, "password": password,
                                           "_xsrf": self.xsrf()})
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post_form(self, path: str, data: dict[str, str] | None = None, *, xsrf: bool = True,
                  **kw: Any) -> httpx.Response:
        data = dict(data or {})
        if xsrf:
            data["_xsrf"] = self.xsrf()
        return self.http.post(path, data=data, **kw)

    def api(self, method: str, path: str, *, xsrf: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if xsrf:
            headers["X-XSRFToken"] = self.xsrf()
        return self.http.request(method, path, headers=headers, **kw)


class ThreadServer:
    """An :class:`NbappsServer` running its own asyncio loop in a daemon thread."""

    def __init__(self, data_dir: Path, db_url: str | None = None, args: list[str] | None = None
                 ) -> None:
        from nbapps.server.app import NbappsServer

        self.server = NbappsServer()
        argv = ["--port=0", f"--data-dir={data_dir}", "--log-level=WARN",
                "--NbappsServer.serve_apps=False"]
        if db_url:
            argv.append(f"--db-url={db_url}")
        self.server.initialize(argv + list(args or []))
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="nbapps-test-server")

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(ready=self.ready, install_signals=False))
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()

    def start(self) -> str:
        self.thread.start()
        if not self.ready.wait(60) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return str(self.server.url)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.request_stop()
            self.thread.join(30)
        assert not self.thread.is_alive(), "server thread did not stop"


@contextmanager
def thread_gallery(tmp_path: Path, db_url: str | None = None, *, users: bool = True,
                   args: list[str] | None = None) -> Iterator[Gallery]:
    data_dir = tmp_path / "data"
    url = db_url or f"sqlite:///{data_dir / 'nbapps.db'}"
    accounts = seed_users(url) if users else {}
    server = ThreadServer(data_dir, url, args)
    try:
        base = server.start()
        yield Gallery(url=base.rstrip("/"), data_dir=data_dir, db_url=url, users=accounts,
                      server=server)
    finally:
        server.stop()


@contextmanager
def probe_gallery(tmp_path: Path) -> Iterator[Gallery]:
    """A gallery with one live app (``live-app`` by ana) and one waiting submission (by alf):
    ``g.values`` fills the placeholders of route probes (slug, id, name, prefix, path)."""
    with thread_gallery(tmp_path) as g:
        with catalog_of(g) as (cat, store):
            live = seed_version(cat, store, slug="live-app", submitter="ana", title="Live app")
            cat.decide(live.version.id, "rita", "approve", "ok")
            sub = seed_version(cat, store, slug="alf-app", submitter="alf", title="Alf app")
        g.values = {"slug": "live-app", "id": sub.version.id, "name": "nobody",  # type: ignore
                    "prefix": "nba_zzzzzzzz", "path": ""}
        yield g


@contextmanager
def catalog_of(g: Gallery) -> Iterator[tuple[Catalog, Any]]:
    cat = open_catalog(g.db_url)
    try:
        yield cat, open_store(None, g.data_dir)
    finally:
        cat.close()


_URL_RE = re.compile(r"serving at (http://\S+)")


def start_process(data_dir: Path, db_url: str, args: list[str] | None = None,
                  env: dict[str, str] | None = None, cwd: Path | None = None,
                  serve_apps: bool = False, port: int = 0
                  ) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m nbapps.server.app`` in a subprocess (``port`` 0: any free one); returns
    (process, URL)."""
    cmd = [sys.executable, "-m", "nbapps.server.app", f"--port={port}", f"--data-dir={data_dir}",
           f"--NbappsServer.serve_apps={serve_apps}",
           f"--db-url={db_url}", "--log-level=INFO", *(args or [])]
    proc = subprocess.Popen(cmd, cwd=cwd or ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        m = _URL_RE.search(line)
        if m:
            proc.log_lines = lines  # type: ignore[attr-defined]
            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            return proc, m.group(1).rstrip("/")
    proc.kill()
    proc.wait(10)
    raise RuntimeError("server process did not start:\n" + "".join(lines))


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    log = getattr(proc, "log_lines", None)
    for line in iter(proc.stdout.readline, b""):
        if log is not None:
            log.append(line.decode(errors="replace"))


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            raise
    return int(proc.returncode)


# -- real bundles (nbapps.bundle), built without a kernel ------------------------------------------

def build_archive(folder: Path, nb: nbformat.NotebookNode | None = None, *,
                  executed_note: str = "") -> bytes:
    """A real bundle of ``nb`` (default: the factory notebook) packed by ``pack_bundle``.

    The validation run is replaced by the notebook itself (plus a stream output carrying
    ``executed_note``), so no kernel starts: the upload path is what these tests exercise.
    """
    from nbapps.bundle import build_bundle, pack_bundle
    from nbapps.validate import ValidationSettings, validate_notebook
    from tests.nbfactory import write_notebook

    nb = nb or make_notebook()
    folder.mkdir(parents=True, exist_ok=True)
    path = write_notebook(nb, folder / "app.ipynb")
    report = validate_notebook(path, ValidationSettings(execute=False))
    assert report.ok, [f.to_dict() for f in report.findings if f.is_error]
    executed = nbformat.from_dict(json.loads(json.dumps(report.app.nb)))
    if executed_note:
        executed.cells[-1].outputs = [nbformat.v4.new_output("stream", text=executed_note)]
    report.executed = executed
    info = build_bundle(path, folder / "out", report=report)
    return pack_bundle(info.path)


# -- the gallery's own check of submissions --------------------------------------------------------

def wait_checked(g: Gallery, version_id: int, *, who: str = "adam",
                 timeout: float = 240.0) -> dict[str, Any]:
    """Poll ``GET /api/submissions/<id>`` until the gallery's check has a verdict (a real kernel
    runs the notebook); returns the submission. Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with g.client(who) as c:
        while True:
            sub = c.get(f"/api/submissions/{version_id}").json()
            check = (sub.get("check") or {}).get("state")
            # a live version keeps its state while checked: wait for the job itself. A verdict
            # moves a validating version in the same transaction, but the API reads the version
            # and its check one after the other: a verdict beside "validating" is a read that
            # straddled that transaction, so ask again
            if sub["state"] != "validating" and check not in ("queued", "running"):
                return dict(sub)
            assert time.monotonic() < deadline, f"no verdict in {timeout} s: {sub['check']}"
            time.sleep(0.2)
