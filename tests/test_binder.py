"""Binder, simulated: a fresh virtual environment built only from ``binder/`` and the repository.

What repo2docker's Python buildpack does, in the same order:

1. the repository is copied into ``$HOME`` (on Binder ``$HOME`` *is* the repository): here the
   files git would commit (tracked + untracked, not ignored) go into a temporary ``home``; the
   built extension (``nbapps/labextension``) is left out so ``pip install .`` really builds it,
   only ``extension/node_modules`` is hard-linked in when present, to spare a network install;
2. a new environment (``python -m venv``, no system site-packages) gets
   ``pip install -r binder/requirements.txt`` (pip's cache and this machine's pip settings);
3. ``binder/postBuild`` runs with the repository as the current folder;
4. the Jupyter server starts the way Binder starts it (through ``binder/start`` if there is one).

Then the checks: the lab extension and its server part are enabled; the gallery answers through
jupyter-server-proxy under ``<base_url>nbapps-gallery/`` (login page, logging in with the demo
credentials, pages whose links keep the prefix); the lab extension holds a working gallery token
and shows the in-container gallery in its panel; a demo app renders and reacts to a slider in
Chromium through both proxies (jupyter-server-proxy, then the gallery's own to its Voilà runner).

Minutes, not seconds (measured on the shared 2-core machine: 45-80 s for requirements.txt,
135-210 s for postBuild, of which up to 110 s for ``pip install .`` with the extension build and
~95 s for seeding the 8 demo notebooks; 3.5-5 min in all): marked ``binder`` and ``slow``.
``NBAPPS_BINDER_SIM_DIR=/some/dir`` keeps the build there and reuses it (see docs/binder.md).
Every process started is stopped, the Jupyter server's whole process tree included.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml


def binder_sim(fn: Any) -> Any:
    """Marks of the tests that need the simulated Binder environment (built once per module)."""
    for mark in (pytest.mark.binder, pytest.mark.slow, pytest.mark.timeout(2400)):
        fn = mark(fn)
    return fn


ROOT = Path(__file__).resolve().parent.parent
#: Binder (JupyterHub) serves each session under a user prefix: so does the simulation
BASE = "/user/binder-sim/"
PREFIX = f"{BASE}nbapps-gallery"
#: environment variables of this process that must not leak into the simulated container
DROPPED_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "CONDA_PREFIX",
               "NBAPPS_DATA_DIR", "NBAPPS_DB_URL", "HATCH_JUPYTER_BUILDER_SKIP_NPM",
               "PIP_REQUIRE_VIRTUALENV", "PIP_USER", "PYTEST_CURRENT_TEST")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: debugging aid: build the environment in this folder once and reuse it in later runs
#: (delete the folder, or its built.json, to rebuild); unset, every run builds from scratch
REUSE_ENV = "NBAPPS_BINDER_SIM_DIR"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def repo_files(root: Path) -> list[str]:
    """What a clone would hold: tracked and untracked files, minus what .gitignore excludes."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (root / f).is_file())


def copy_repo(root: Path, dest: Path) -> None:
    for rel in repo_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target, follow_symlinks=False)  # mtimes kept: see labext_build
    node_modules = root / "extension" / "node_modules"
    if node_modules.is_dir():
        shutil.copytree(node_modules, dest / "extension" / "node_modules", symlinks=True,
                        copy_function=os.link)


def clean_env(home: Path, venv: Path, gallery_port: int) -> dict[str, str]:
    """This process's environment as a fresh container would see it: the venv first on PATH,
    ``HOME`` = the repository copy, no trace of the project's development venv."""
    real_cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    env = {k: v for k, v in os.environ.items()
           if k not in DROPPED_ENV and not k.startswith(("JUPYTER", "XDG_", "NBAPPS_BINDER"))}
    dev = [str(Path(sys.prefix)), os.environ.get("VIRTUAL_ENV") or str(Path(sys.prefix))]
    path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep)
            if p and not any(p.startswith(d) for d in dev)]
    # the machine's own pip settings (index mirrors, find-links) live under the real HOME
    user_pip = next((c for c in (Path.home() / ".config" / "pip" / "pip.conf",
                                 Path.home() / ".pip" / "pip.conf") if c.is_file()), None)
    if user_pip is not None and "PIP_CONFIG_FILE" not in env:
        env["PIP_CONFIG_FILE"] = str(user_pip)
    env.update({
        "HOME": str(home),
        "PATH": os.pathsep.join([str(venv / "bin"), *path]),
        "VIRTUAL_ENV": str(venv),
        "PIP_CACHE_DIR": real_cache,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "NBAPPS_BINDER_GALLERY_PORT": str(gallery_port),
        "PYTHONUNBUFFERED": "1",
    })
    return env


@dataclass
class BinderEnv:
    home: Path
    venv: Path
    env: dict[str, str]
    gallery_port: int
    logs: Path
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, cmd: list[str], timeout: float) -> None:
        """Run one build step; its output goes to ``logs/<name>.log`` (tail shown on failure)."""
        log = self.logs / f"{name}.log"
        t0 = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.run(cmd, cwd=self.home, env=self.env, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        self.timings[name] = time.monotonic() - t0
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-6000:]
            pytest.fail(f"{name} failed (exit {proc.returncode}); end of {log}:\n{tail}")

    def output(self, *args: str) -> str:
        proc = subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.home,
                              env=self.env, capture_output=True, text=True, timeout=120)
        return ANSI.sub("", proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def binder(tmp_path_factory: pytest.TempPathFactory) -> BinderEnv:
    keep = os.environ.get(REUSE_ENV)
    tmp = Path(keep) if keep else tmp_path_factory.mktemp("binder")
    home, venv, logs = tmp / "home", tmp / "venv", tmp / "logs"
    built = tmp / "built.json"
    if keep and built.is_file():  # a finished build kept by an earlier run (debugging only)
        port = json.loads(built.read_text())["gallery_port"]
        return BinderEnv(home, venv, clean_env(home, venv, port), port, logs)
    if keep:
        shutil.rmtree(tmp, ignore_errors=True)
    logs.mkdir(parents=True)
    t0 = time.monotonic()
    copy_repo(ROOT, home)
    assert not (home / "nbapps" / "labextension").exists()
    gallery_port = free_port()
    b = BinderEnv(home, venv, clean_env(home, venv, gallery_port), gallery_port, logs)
    b.timings["copy"] = time.monotonic() - t0
    b.run("venv", [sys.executable, "-m", "venv", str(venv)], timeout=300)
    b.run("requirements", [str(venv / "bin" / "python"), "-m", "pip", "install",
                           "-r", "binder/requirements.txt"], timeout=1200)
    b.run("postBuild", ["bash", "binder/postBuild"], timeout=1800)
    print("binder build timings (s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in b.timings.items()))
    if keep:
        built.write_text(json.dumps({"gallery_port": gallery_port, "timings": b.timings}))
    return b


@dataclass
class Jupyter:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """A browser-like client: logged in to Jupyter by its cookie (``/lab?token=``)."""
        with httpx.Client(base_url=self.url, timeout=90, follow_redirects=False) as c:
            r = c.get(f"{BASE}lab", params={"token": self.token})
            assert r.status_code == 200, r.status_code
            yield c


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (it stops what it started), then anything of its tree still alive."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    _, alive = psutil.wait_procs(tree, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture(scope="module")
def jupyter(binder: BinderEnv) -> Iterator[Jupyter]:
    port, token = free_port(), secrets.token_hex(16)
    cmd = [str(binder.venv / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--allow-root", f"--ServerApp.token={token}",
           f"--ServerApp.base_url={BASE}"]
    start = binder.home / "binder" / "start"
    if start.is_file():
        cmd = ["bash", str(start), *cmd]
    log = binder.logs / "jupyter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=binder.home, env=binder.env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = Jupyter(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            try:
                if httpx.get(f"{server.url}{BASE}api/status", params={"token": token},
                             timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Jupyter server did not start in 120 s"
            time.sleep(0.5)
        yield server
    finally:
        stop_tree(proc)
        assert not port_open(binder.gallery_port), "the gallery outlived the Jupyter server"


def demo_accounts(home: Path) -> dict[str, str]:
    """user → password from ``~/nbapps-demo-credentials.txt`` (written by postBuild)."""
    text = (home / "nbapps-demo-credentials.txt").read_text()
    rows = [line.split() for line in text.splitlines()]
    return {r[0]: r[1] for r in rows
            if len(r) >= 2 and r[0] in ("analyst", "reviewer", "viewer", "admin")}


def gallery_apps() -> list[dict[str, Any]]:
    data = yaml.safe_load((ROOT / "gallery" / "gallery.yaml").read_text())
    return list(data["apps"] if isinstance(data, dict) else data)


def xsrf_field(html: str) -> str:
    m = re.search(r'name="_xsrf" value="([^"]+)"', html)
    assert m, "no XSRF field in the form"
    return m.group(1)


def root_urls(html: str) -> list[str]:
    """Every root-relative URL of an href/src/action attribute."""
    return re.findall(r'\s(?:href|src|action)="(/[^"]*)"', html)


@dataclass
class Session:
    client: httpx.Client
    base: str


@pytest.fixture(scope="module")
def viewer(binder: BinderEnv, jupyter: Jupyter) -> Iterator[Session]:
    """Logged in to the proxied gallery as the demo viewer, through its real login form."""
    with jupyter.client() as client:
        password = demo_accounts(binder.home)["viewer"]
        page = client.get(f"{PREFIX}/login", params={"next": "/"})
        assert page.status_code == 200
        r = client.post(f"{PREFIX}/login", data={
            "_xsrf": xsrf_field(page.text), "username": "viewer", "password": password,
            "next": "/"}, headers={"Origin": jupyter.url, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 302, r.text[:2000]
        assert r.headers["location"] == f"{PREFIX}/"
        assert any(f"path={PREFIX}" in c.lower() for c in r.headers.get_list("set-cookie"))
        yield Session(client, jupyter.url)


# -- the environment ---------------------------------------------------------------------------

@binder_sim
def test_lab_extension_enabled(binder: BinderEnv) -> None:
    lab = binder.output("jupyter", "labextension", "list")
    line = next((x for x in lab.splitlines() if "@nbapps/jupyterlab" in x), "")
    assert "enabled" in line and "OK" in line, lab
    assert str(binder.venv) in lab  # installed into the fresh environment, not found elsewhere
    server = binder.output("jupyter", "server", "extension", "list")
    assert re.search(r"nbapps\.labserver\s+enabled", server), server
    assert re.search(r"jupyter_server_proxy\s+enabled", server), server


@binder_sim
def test_postbuild_seeded_the_demo(binder: BinderEnv) -> None:
    accounts = demo_accounts(binder.home)
    assert set(accounts) == {"analyst", "reviewer", "viewer", "admin"}
    assert all(len(p) >= 12 for p in accounts.values())
    assert (binder.home / ".nbapps-demo" / "nbapps.db").is_file()
    # the installed package ran postBuild's steps, not the repository's source tree
    link = binder.home / ".nbapps-demo" / "binder-templates" / "nbapps-builtin"
    assert str(link.resolve()).startswith(str(binder.venv)), link.resolve()
    # the clone has no widget renderer (git-ignored); the install's build hook fetched it, so
    # the review preview renders widgets on Binder too
    # -I: not the source tree of the repository (the current folder), the installed package
    package = binder.output("python", "-I", "-c", "import nbapps, pathlib; "
                            "print(pathlib.Path(nbapps.__file__).parent)").strip()
    assert package.startswith(str(binder.venv)), package
    assert (Path(package) / "server" / "static" / "widgets" / "embed.js").is_file()


# -- through jupyter-server-proxy --------------------------------------------------------------

@binder_sim
def test_launcher_tile(jupyter: Jupyter) -> None:
    with jupyter.client() as c:
        info = c.get(f"{BASE}server-proxy/servers-info").json()
        entry = next(s for s in info["server_processes"] if s["name"] == "nbapps-gallery")
        assert entry["launcher_entry"]["title"] == "App gallery"
        assert entry["launcher_entry"]["enabled"] is True
        icon_url = entry["launcher_entry"]["icon_url"]
        icon = c.get(icon_url if icon_url.startswith(BASE) else BASE + icon_url.lstrip("/"))
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")


@contextlib.contextmanager
def chromium_page() -> Iterator[Any]:
    """A fresh page of Debian's Chromium (Playwright), closed afterwards."""
    from tests.chromium import launched_chromium

    with launched_chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(120_000)
        yield context.new_page()


@binder_sim
def test_opening_jupyterlab_starts_the_gallery(binder: BinderEnv, jupyter: Jupyter) -> None:
    """The panel requests the gallery's launch path once, so a visitor can publish before
    opening the "App gallery" tile (jupyter-server-proxy has no start-with-Jupyter option).
    Runs before any other check reaches the gallery."""
    assert not port_open(binder.gallery_port), "the gallery runs already: test order changed?"
    internal = f"http://127.0.0.1:{binder.gallery_port}{PREFIX}"
    with chromium_page() as page:
        page.goto(f"{jupyter.url}{BASE}lab?token={jupyter.token}")
        page.locator(".jp-SideBar.jp-mod-right [data-id='nbapps-panel']").wait_for()
        deadline = time.monotonic() + 90
        while not port_open(binder.gallery_port):
            assert time.monotonic() < deadline, "opening JupyterLab did not start the gallery"
            time.sleep(0.5)
        # ready (jupyter-server-proxy waits for it), and it is the gallery under its prefix
        r = httpx.get(f"{internal}/healthz", timeout=30)
        assert r.status_code == 200 and r.headers["server"] == "nbapps", r.text[:300]


@binder_sim
def test_gallery_needs_jupyter_login(jupyter: Jupyter) -> None:
    r = httpx.get(f"{jupyter.url}{PREFIX}/login", timeout=90, follow_redirects=False)
    assert r.status_code in (302, 403), r.status_code
    assert "nbapps" not in r.headers.get("server", "")
    if r.status_code == 302:
        assert r.headers["location"].startswith(f"{BASE}login")  # Jupyter's, not the gallery's
    # Jupyter's token in a header lets a script in; the gallery does not see it (it would take
    # it for a wrong gallery API token and answer 401)
    r = httpx.get(f"{jupyter.url}{PREFIX}/login", timeout=90,
                  headers={"Authorization": f"token {jupyter.token}"})
    assert r.status_code == 200 and r.headers["server"] == "nbapps", r.text[:500]


@binder_sim
def test_login_page_through_proxy(binder: BinderEnv, jupyter: Jupyter) -> None:
    with jupyter.client() as c:
        r = c.get(f"{PREFIX}/")
        assert r.status_code == 302
        assert r.headers["location"] == f"{PREFIX}/login?next={PREFIX}/"
        page = c.get(r.headers["location"])
    assert page.status_code == 200 and page.headers["server"] == "nbapps"
    assert f'action="{PREFIX}/login"' in page.text
    assert [u for u in root_urls(page.text) if not u.startswith(f"{PREFIX}/")] == []
    # the demo accounts are on the login page
    for name, password in demo_accounts(binder.home).items():
        assert name in page.text and password in page.text
    # the gallery's XSRF cookie has its own name and stays under the prefix
    cookie = page.headers.get("set-cookie", "")
    assert cookie.startswith("_nbapps_xsrf=") and f"Path={PREFIX}" in cookie


@binder_sim
def test_wrong_password_is_refused(binder: BinderEnv, jupyter: Jupyter) -> None:
    with jupyter.client() as c:
        page = c.get(f"{PREFIX}/login")
        r = c.post(f"{PREFIX}/login", data={
            "_xsrf": xsrf_field(page.text), "username": "viewer", "password": "not-it-at-all",
            "next": "/"}, headers={"Origin": jupyter.url, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code in (401, 403) and "nbapps-session" not in r.headers.get("set-cookie", "")


@binder_sim
def test_gallery_lists_the_demo_apps(viewer: Session) -> None:
    r = viewer.client.get(f"{PREFIX}/")
    assert r.status_code == 200
    slugs = set(re.findall(rf'href="{PREFIX}/app/([a-z0-9-]+)"', r.text))
    assert len(slugs) == len(gallery_apps()), slugs
    assert [u for u in root_urls(r.text) if not u.startswith(f"{PREFIX}/")] == []
    css = next(u for u in root_urls(r.text) if "/static/" in u)
    style = viewer.client.get(css)
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


@binder_sim
def test_demo_app_renders(viewer: Session) -> None:
    slug = "loan-calculator"
    page = viewer.client.get(f"{PREFIX}/app/{slug}")
    assert page.status_code == 200
    assert f'"{PREFIX}/app/{slug}/open"' in page.text  # "Open app": the app frame
    thumb = viewer.client.get(f"{PREFIX}/app/{slug}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"].startswith("image/")

    deadline = time.monotonic() + 180
    while True:
        r = viewer.client.get(f"{PREFIX}/apps/{slug}/")
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(float(r.headers.get("retry-after", "2")))  # runner starting
    assert r.status_code == 200, r.text[:2000]
    assert "jp-OutputArea" in r.text and 'class="nbapps-cell-error' not in r.text
    assert [u for u in root_urls(r.text) if not u.startswith(f"{PREFIX}/")] == []
    # Voilà's front end builds its kernel and widget URLs from baseUrl
    bases = re.findall(r'"baseUrl"\s*:\s*"([^"]*)"', r.text)
    assert bases and all(b == f"{PREFIX}/apps/{slug}/" for b in bases), bases


@binder_sim
def test_demo_app_and_lab_panel_in_chromium(binder: BinderEnv, jupyter: Jupyter,
                                            viewer: Session) -> None:
    """What a Binder visitor does: JupyterLab's nbapps panel already points at the demo gallery
    (with a token), and a demo app opened through the proxy reacts to its widgets."""
    from tests.test_app_browser import _wait_app_rendered, step_term_slider

    internal = f"http://127.0.0.1:{binder.gallery_port}{PREFIX}"
    with chromium_page() as page:
        page.goto(f"{jupyter.url}{BASE}lab?token={jupyter.token}")
        page.locator(".jp-SideBar.jp-mod-right [data-id='nbapps-panel']").click()
        panel = page.locator("#nbapps-panel")
        panel.locator(".nbapps-gallery-url", has_text=internal).wait_for()
        panel.locator(".nbapps-token-status", has_text="nba_").wait_for()

        page.goto(f"{jupyter.url}{PREFIX}/login")
        page.fill("#username", "viewer")
        page.fill("#password", demo_accounts(binder.home)["viewer"])
        page.locator('form[action$="/login"] [type="submit"]').click()
        page.wait_for_url(f"{jupyter.url}{PREFIX}/")
        page.goto(f"{jupyter.url}{PREFIX}/apps/loan-calculator/")
        _wait_app_rendered(page)
        step_term_slider(page)


@binder_sim
def test_lab_extension_can_publish_to_the_gallery(binder: BinderEnv, jupyter: Jupyter,
                                                  viewer: Session) -> None:
    """postBuild wrote an analyst token; the lab extension stored it at start for its default
    gallery (the in-container URL with Jupyter's base URL filled in), reports both, and the
    gallery accepts it (the gallery runs: ``viewer`` started it through the proxy)."""
    internal = f"http://127.0.0.1:{binder.gallery_port}{PREFIX}"
    r = httpx.get(f"{jupyter.url}{BASE}nbapps/settings",
                  headers={"Authorization": f"token {jupyter.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["gallery_url"] == internal and r.json()["token"]["set"] is True, r.text
    store = binder.home / ".local" / "share" / "jupyter" / "nbapps" / "lab-credentials.json"
    token = json.loads(store.read_text())["galleries"][internal]["token"]
    me = httpx.get(f"{internal}/api/me", headers={"Authorization": f"Bearer {token}"},
                   timeout=30)  # directly, not through Jupyter: as the lab extension does
    assert me.status_code == 200 and me.json()["name"] == "analyst", me.text


# -- the proxy entry, without a build (fast) ------------------------------------------------------

def test_proxy_entry_serves_the_gallery_under_its_own_path(tmp_path: Path) -> None:
    from nbapps.binder_proxy import NAME, gallery_server, internal_url

    entry = gallery_server(data_dir=tmp_path / "data", share=tmp_path / "share")
    # full paths are passed on, and the gallery is told the prefix (jupyter-server-proxy fills
    # in {port} and {base_url}): nothing to rewrite in its answers
    assert entry["absolute_url"] is True and "rewrite_response" not in entry
    assert f"--base-url={{base_url}}{NAME}/" in entry["command"]
    assert "--port={port}" in entry["command"]
    assert entry["request_headers_override"] == {"Authorization": ""}
    assert entry["launcher_entry"]["path_info"] == f"{NAME}/"
    assert internal_url().endswith(f"{{base_url}}{NAME}/")
    assert internal_url("/user/x/") == \
        f"http://127.0.0.1:{entry['port']}/user/x/{NAME}/"
