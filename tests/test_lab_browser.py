"""JupyterLab with the nbapps extension, driven in Chromium: from a notebook to a submission.

A real gallery (``nbapps serve``) and a real ``jupyter lab`` run as subprocesses on free loopback
ports, with private Jupyter config/data/settings folders. The lab serves the extension built in
``nbapps/labextension`` (the output of ``pip install -e .``) ahead of any installed copy, so the
test always exercises the current build. Screenshots go to ``test-artifacts/lab/``.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts" / "lab"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
LAB_TOKEN = "lab-browser-test-token"
PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class Gallery:
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[Gallery]:
    base = tmp_path_factory.mktemp("gallery")
    data = base / "data"
    nbapps = str(BIN / "nbapps")
    tokens = {}
    for name, role in (("ana", "analyst"), ("rita", "reviewer")):
        subprocess.run([nbapps, "user", "add", name, "--role", role, "--password-stdin",
                        f"--data-dir={data}"], input=PASSWORD.encode(), check=True,
                       capture_output=True, timeout=120)
        out = subprocess.run([nbapps, "user", "token", name, f"--data-dir={data}"],
                             check=True, capture_output=True, timeout=120)
        tokens[name] = out.stdout.decode().strip()
    port = free_port()
    log = (base / "gallery.log").open("wb")
    proc = subprocess.Popen([nbapps, "serve", f"--port={port}", "--ip=127.0.0.1",
                             f"--data-dir={data}", "--log-level=WARN"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=base)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        yield Gallery(url=url, tokens=tokens)
    finally:
        stop(proc)
        log.close()


def app_notebook() -> nbformat.NotebookNode:
    """No tags yet, a parameters cell that computes (NBA022), no description (NBA032)."""
    nb = new_notebook(cells=[
        new_markdown_cell("# Sales by region"),
        new_code_cell("n = 3  # how many\nlimit = n * 2"),
        new_code_cell("import ipywidgets as w\nw.IntSlider(value=n, max=limit)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nbapps"] = {"title": "Lab sales board", "tags": ["sales"]}
    return nb


@dataclass
class Lab:
    url: str
    root: Path
    settings_dir: Path
    data_dir: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, gallery: Gallery) -> Iterator[Lab]:
    built = ROOT / "nbapps" / "labextension"
    if not (built / "package.json").exists():
        pytest.fail("the lab extension is not built: run `pip install -e .` (make test does)")
    base = tmp_path_factory.mktemp("lab")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    nbformat.write(app_notebook(), str(root / "app.ipynb"))
    # serve this checkout's build first (the installed copy may be older)
    extra = base / "labextensions" / "@nbapps"
    extra.mkdir(parents=True)
    (extra / "jupyterlab").symlink_to(built, target_is_directory=True)
    plugin = settings / "@nbapps" / "jupyterlab"
    plugin.mkdir(parents=True)
    (plugin / "plugin.jupyterlab-settings").write_text(json.dumps({"galleryUrl": gallery.url}))
    news = settings / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_DATA_DIR": str(base / "data"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces")}
    port = free_port()
    log = (base / "lab.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--allow-root", "--no-browser",
         f"--ServerApp.token={LAB_TOKEN}", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}",
         f"--LabApp.extra_labextensions_path={base / 'labextensions'}",
         "--NbappsLabApp.cell_timeout=60"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/api/status?token={LAB_TOKEN}", proc)
        yield Lab(url=url, root=root, settings_dir=settings, data_dir=base / "data")
    finally:
        stop(proc)
        log.close()
        logs = ARTIFACTS / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(base / "lab.log", logs / "lab.log")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/install-system-deps.sh")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_tag_validate_fix_publish(lab: Lab, gallery: Gallery, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    shot = lambda name: page.screenshot(path=str(ARTIFACTS / f"{name}.png"))  # noqa: E731
    try:
        _flow(page, lab, gallery, shot)
    except Exception:
        shot("failure")
        raise
    finally:
        page.close()
    assert not [e for e in errors if "nbapps" in e], errors


def _flow(page, lab: Lab, gallery: Gallery, shot) -> None:
    page.set_default_timeout(60_000)
    page.goto(f"{lab.url}/lab/tree/app.ipynb?token={LAB_TOKEN}")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    cells.nth(2).wait_for()
    page.locator("#nbapps-panel").wait_for(state="attached")
    # the notebook toolbar has the Publish button
    publish_button = page.locator(".jp-NotebookPanel-toolbar [data-command='nbapps:publish']")
    publish_button.wait_for()

    # -- tag the parameters cell from its cell toolbar, the widget cell from the context menu --
    cells.nth(1).locator(".jp-InputPrompt").click()
    toggle = cells.nth(1).locator("[data-command='nbapps:toggle-parameters-tag']")
    toggle.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[1]"
        ".classList.contains('nbapps-tag-parameters')")
    cells.nth(2).locator(".jp-InputPrompt").click(button="right")
    page.locator(".lm-Menu-item[data-command='nbapps:toggle-widget-tag']").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[2]"
        ".classList.contains('nbapps-tag-widget')")
    assert "nbapps-tag-widget" not in (cells.nth(1).get_attribute("class") or "")

    # -- the API token in JupyterLab's settings editor: moved to the server, shown masked --
    masked = gallery.tokens["ana"][:12] + "…"
    page.keyboard.press("Control+,")
    token_field = page.locator("[id='jp-SettingsEditor-@nbapps/jupyterlab:plugin_apiToken']")
    page.locator(".jp-PluginList-entry[data-id='@nbapps/jupyterlab:plugin']").first.click()
    token_field.fill(gallery.tokens["ana"])
    page.wait_for_function(
        "want => document.getElementById('jp-SettingsEditor-@nbapps/jupyterlab:plugin_apiToken')"
        ".value === want", arg=masked + " (stored on the server)")
    shot("0-settings-editor")
    page.locator(".lm-TabBar-tab", has_text="app.ipynb").click()

    # -- the sidebar: contract table, token status, a new token via a password field --
    page.locator(".jp-SideBar.jp-mod-right [data-id='nbapps-panel']").click()
    panel = page.locator("#nbapps-panel")
    panel.locator(".nbapps-contract tr[data-name='n']").wait_for()
    assert "how many" in panel.locator(".nbapps-contract").inner_text()
    panel.locator(".nbapps-token-status", has_text=masked).wait_for()
    panel.locator(".nbapps-set-token").click()
    field = page.locator(".jp-Dialog .nbapps-token-input")
    assert field.get_attribute("type") == "password"
    field.fill(gallery.tokens["ana"])
    page.locator(".jp-Dialog .jp-mod-accept").click()
    panel.locator(".nbapps-token-status", has_text=masked).wait_for()
    shot("1-tagged")

    # -- validate: a finding on the parameters cell and one about the description --
    panel.locator(".nbapps-validate").click()
    finding = panel.locator(".nbapps-finding[data-code='NBA022']")
    finding.wait_for(timeout=120_000)
    assert panel.locator(".nbapps-finding[data-code='NBA032']").count() == 1
    assert finding.get_attribute("data-cell") == "1"
    cells.nth(0).locator(".jp-InputPrompt").click()  # move away, then jump back via the finding
    finding.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[1]"
        ".classList.contains('jp-mod-active')")
    shot("2-findings")

    # -- fix both: plain literals in the parameters cell, a description in the form --
    cells.nth(1).locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("n = 3  # how many\nlimit = 6  # largest value")
    page.keyboard.press("Escape")
    description = panel.locator(".nbapps-meta-description")
    description.fill("Sales per region, for the weekly meeting.")
    description.press("Tab")  # `change` writes metadata.nbapps
    panel.locator(".nbapps-contract tr[data-name='limit']").wait_for()
    panel.locator(".nbapps-validate").click()
    panel.locator(".nbapps-summary.nbapps-ok").wait_for(timeout=120_000)
    assert panel.locator(".nbapps-finding.nbapps-sev-error").count() == 0
    shot("3-fixed")

    # -- publish from the notebook toolbar: progress with a Cancel button, then the link --
    publish_button.click()
    panel.locator(".nbapps-publish-box").wait_for()
    panel.locator(".nbapps-publish-box .nbapps-cancel-publish").wait_for()
    shot("4-publishing")
    link = panel.locator(".nbapps-publish-box .nbapps-submission-link")
    link.wait_for(timeout=180_000)
    href = link.get_attribute("href") or ""
    assert href.startswith(gallery.url + "/submissions/"), href
    submission_id = int(href.rsplit("/", 1)[1])
    shot("5-published")

    # -- the reviewer's queue has it (gallery API) --
    with httpx.Client(base_url=gallery.url, timeout=30,
                      headers={"Authorization": f"Bearer {gallery.tokens['rita']}"}) as c:
        queue = c.get("/api/submissions", params={"state": "submitted"}).json()["items"]
        mine = [i for i in queue if i["id"] == submission_id]
        assert mine and mine[0]["title"] == "Lab sales board"
        assert mine[0]["description"] == "Sales per region, for the weekly meeting."
        assert mine[0]["submitter"] == "ana"
        r = c.post(f"/api/submissions/{submission_id}/decision",
                   json={"decision": "request_changes", "comment": "Please add a legend"})
        assert r.status_code == 200, r.text

    # -- the panel lists the submission with the reviewer's comment --
    panel.locator(".nbapps-refresh-submissions").click()
    item = panel.locator(f".nbapps-submission[data-id='{submission_id}']")
    item.locator(".nbapps-state-changes_requested").wait_for()
    assert "Please add a legend" in item.inner_text()
    shot("6-submissions")

    # the token never reached the page or the lab settings files
    assert gallery.tokens["ana"] not in page.content()
    for f in lab.settings_dir.rglob("*"):
        if f.is_file():
            assert gallery.tokens["ana"] not in f.read_text()
    # the notebook on disk has the tags and the metadata the UI wrote
    nb = nbformat.read(str(lab.root / "app.ipynb"), as_version=4)
    assert nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.cells[2].metadata["tags"] == ["widget"]
    assert nb.metadata["nbapps"]["description"] == "Sales per region, for the weekly meeting."
