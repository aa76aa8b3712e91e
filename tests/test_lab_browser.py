"""JupyterLab with the nbapps extension, driven in Chromium: from a notebook to a submission.

A real gallery (``nbapps serve``) and a real ``jupyter lab`` run as subprocesses on free loopback
ports, with private Jupyter config/data/settings folders. The lab serves the extension built in
``nbapps/labextension`` (the output of ``pip install -e .``) ahead of any installed copy, so the
test always exercises the current build. Screenshots go to ``test-artifacts/lab/``.

The lab runs with ``expose_app_in_browser`` so a test can read what JupyterLab holds (the
notebook model's metadata and dirty flag) beside what the page shows.
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

from tests.chromium import launched_chromium

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts" / "lab"
LAB_TOKEN = "lab-browser-test-token"
LAB_ONLY = "NBAPPS_TEST_LAB_ONLY"
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
           "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           # set for the lab (and so its local validation) only: the gallery's own run of a
           # notebook that needs it fails, as "works on my machine" notebooks do
           LAB_ONLY: "1"}
    port = free_port()
    log = (base / "lab.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--allow-root", "--no-browser",
         f"--ServerApp.token={LAB_TOKEN}", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}",
         f"--LabApp.extra_labextensions_path={base / 'labextensions'}",
         "--LabApp.expose_app_in_browser=True", "--NbappsLabApp.cell_timeout=60"],
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
    with launched_chromium() as b:
        yield b


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
    # cell 2 as JupyterLab counts (index 1), as the finding's JSON says (`cell`, `cell_index`)
    assert finding.get_attribute("data-cell") == "2"
    assert finding.get_attribute("data-cell-index") == "1"
    assert "cell 2" in finding.locator(".nbapps-cellref").inner_text()
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
    # submitted, and (on a gallery that runs submissions itself) passed the gallery's check
    link = panel.locator(".nbapps-publish-box.nbapps-phase-submitted .nbapps-submission-link")
    link.wait_for(timeout=300_000)
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

    # -- the panel lists the submission with the reviewer's decision and its reason --
    panel.locator(".nbapps-refresh-submissions").click()
    item = panel.locator(f".nbapps-submission[data-id='{submission_id}']")
    item.locator(".nbapps-state-changes_requested").wait_for()
    decision = item.locator(".nbapps-decision-request_changes")
    assert decision.locator(".nbapps-decision-label").inner_text() == "Changes requested by rita"
    assert decision.locator(".nbapps-decision-comment").inner_text() == "Please add a legend"
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


# -- every edit in the panel reaches the gallery ---------------------------------------------------

#: records the toasts JupyterLab shows and the publish box's labels (installed before the
#: page's own scripts run)
PAGE_RECORDER = """
window.__nbappsToasts = [];
window.__nbappsLabels = [];
new MutationObserver(records => {
  for (const r of records) {
    for (const n of r.addedNodes) {
      if (n.nodeType !== 1) continue;
      const all = sel => (n.matches(sel) ? [n] : [...n.querySelectorAll(sel)]);
      for (const t of all('.Toastify__toast')) window.__nbappsToasts.push(t.textContent);
      for (const l of all('.nbapps-publish-label')) window.__nbappsLabels.push(l.textContent);
    }
  }
}).observe(document, {subtree: true, childList: true});
"""

#: words (runs of non-space) that the layout broke across lines although they fit on one
BROKEN_WORDS = """
root => {
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const box = n.parentElement.getBoundingClientRect();
    if (!box.width || n.parentElement.closest('input, textarea')) continue;
    for (const m of n.textContent.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(n, m.index);
      range.setEnd(n, m.index + m[0].length);
      const rects = [...range.getClientRects()].filter(r => r.width > 0);
      const lines = new Set(rects.map(r => Math.round(r.top)));
      const width = rects.reduce((sum, r) => sum + r.width, 0);
      if (lines.size > 1 && width < box.width - 1) out.push(m[0]);
    }
  }
  return out;
}
"""


def store_token(lab: Lab, gallery: Gallery, user: str = "ana") -> None:
    r = httpx.post(f"{lab.url}/nbapps/settings", timeout=30,
                   headers={"Authorization": f"token {LAB_TOKEN}"},
                   json={"gallery_url": gallery.url, "token": gallery.tokens[user]})
    assert r.status_code == 200, r.text


def ready_notebook(title: str, **meta) -> nbformat.NotebookNode:
    """A notebook that passes validation, with the kernel info nbformat writes (not the
    kernel's: opening it makes JupyterLab refresh both)."""
    nb = app_notebook()
    nb.cells[1].source = "n = 3  # how many\nlimit = 6  # largest value"
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells[2].metadata["tags"] = ["widget"]
    nb.cells[0].source = f"# {title}"
    nb.metadata["nbapps"] = {"title": title, **meta}
    return nb


def open_notebook(page, lab: Lab, name: str):
    """Open ``name`` alone (the workspace is reset) and show the nbapps panel."""
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={LAB_TOKEN}")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(2).wait_for()
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           f" && window.jupyterapp.shell.currentWidget.context.path === '{name}'")
    page.evaluate("() => window.jupyterapp.commands.execute('nbapps:show-panel')")
    panel = page.locator("#nbapps-panel")
    panel.locator(".nbapps-meta-title").wait_for()
    return panel


MODEL = "window.jupyterapp.shell.currentWidget.content.model"


def model_meta(page) -> dict:
    return page.evaluate(f"() => {MODEL}.getMetadata('nbapps') || {{}}")


def wait_kernel_info(page) -> None:
    """Until JupyterLab has written the running kernel's spec and language info."""
    page.wait_for_function("() => { const s = window.jupyterapp.shell.currentWidget"
                           ".sessionContext.session; return !!(s && s.kernel); }",
                           timeout=120_000)
    display = page.evaluate("async () => (await window.jupyterapp.shell.currentWidget"
                            ".sessionContext.session.kernel.spec).display_name")
    page.wait_for_function(f"""want => {{
      const m = {MODEL};
      const info = m.getMetadata('language_info') || {{}};
      const ks = m.getMetadata('kernelspec') || {{}};
      return !!info.version && ks.display_name === want;
    }}""", arg=display, timeout=120_000)


def is_dirty(page) -> bool:
    return page.evaluate(f"() => {MODEL}.dirty")


def test_every_panel_edit_reaches_the_gallery(lab: Lab, gallery: Gallery, browser):
    """Type into each field in turn (Tab and clicks, a click on a toolbar button that takes no
    focus last): nothing reverts, the notebook holds it, the submission carries it. Opening
    does not mark the notebook dirty; one toast per publish; words wrap whole."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    store_token(lab, gallery)
    nbformat.write(ready_notebook("Edit board", description="Old description",
                                  tags=["old"]), str(lab.root / "edit.ipynb"))
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.add_init_script(PAGE_RECORDER)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        _edit_flow(page, lab, gallery)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "edit-failure.png"))
        raise
    finally:
        page.close()
    assert not [e for e in errors if "nbapps" in e], errors


def _edit_flow(page, lab: Lab, gallery: Gallery) -> None:
    page.set_default_timeout(60_000)
    panel = open_notebook(page, lab, "edit.ipynb")
    title = panel.locator(".nbapps-meta-title")
    description = panel.locator(".nbapps-meta-description")
    tags = panel.locator(".nbapps-meta-tags")
    tab = page.locator(".lm-TabBar-tab", has_text="edit.ipynb")

    # -- opening does not mark the notebook dirty (JupyterLab rewrites the kernel info) --
    wait_kernel_info(page)
    assert not is_dirty(page)
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")

    # -- words wrap whole in the narrow panel (its parameter table too) --
    panel.locator(".nbapps-contract tr[data-name='limit']").wait_for()
    assert page.evaluate(BROKEN_WORDS, panel.element_handle()) == []

    # -- Title, Tab, Description, Tab, Tags: each field keeps what was typed --
    title.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("Edit board v2")
    page.keyboard.press("Tab")
    page.wait_for_function("() => document.activeElement.classList.contains("
                           "'nbapps-meta-description')")
    page.keyboard.press("Control+A")
    page.keyboard.type("A new description")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("sales, weekly")
    assert title.input_value() == "Edit board v2"
    assert description.input_value() == "A new description"
    assert tags.input_value() == "sales, weekly"
    assert model_meta(page) == {"title": "Edit board v2", "description": "A new description",
                                "tags": ["sales", "weekly"]}
    assert is_dirty(page)  # a real edit is a change

    # -- back with clicks: the description, then the title, then into a cell and back --
    description.click()
    page.keyboard.press("End")
    page.keyboard.type(" for the weekly meeting.")
    title.click()
    page.keyboard.press("End")
    page.keyboard.type(" (EU)")
    page.locator(".jp-Notebook .jp-Cell").nth(0).locator(".jp-InputPrompt").click()
    tags.click()
    page.keyboard.press("End")
    page.keyboard.type(", eu")
    description.click()
    page.keyboard.press("End")
    page.keyboard.type(" Updated daily.")
    want_description = "A new description for the weekly meeting. Updated daily."
    assert title.input_value() == "Edit board v2 (EU)"
    assert description.input_value() == want_description
    assert tags.input_value() == "sales, weekly, eu"

    # -- publish with the notebook toolbar's button while the description still has focus
    # (a toolbar button takes no focus: no blur, no `change` event) --
    page.locator(".jp-NotebookPanel-toolbar [data-command='nbapps:publish']").click()
    box = panel.locator(".nbapps-publish-box")
    box.wait_for()
    end = panel.locator(".nbapps-publish-box:is(.nbapps-phase-submitted, .nbapps-phase-failed, "
                        ".nbapps-phase-blocked, .nbapps-phase-rejected)")
    end.wait_for(timeout=300_000)
    assert "nbapps-phase-submitted" in (end.get_attribute("class") or ""), end.inner_text()
    labels = page.evaluate("() => window.__nbappsLabels")
    link = end.locator(".nbapps-submission-link")
    submission_id = int((link.get_attribute("href") or "").rsplit("/", 1)[1])
    page.screenshot(path=str(ARTIFACTS / "edit-published.png"))

    # the fields still say what was typed; the notebook was saved with it and its app
    assert description.input_value() == want_description
    saved = nbformat.read(str(lab.root / "edit.ipynb"), as_version=4).metadata["nbapps"]
    assert saved == {"title": "Edit board v2 (EU)", "description": want_description,
                     "tags": ["sales", "weekly", "eu"], "slug": "edit-board-v2-eu"}
    assert panel.locator(".nbapps-meta-slug").inner_text() == "edit-board-v2-eu"
    assert not is_dirty(page)

    # -- the submission on the gallery carries every edit --
    with httpx.Client(base_url=gallery.url, timeout=30,
                      headers={"Authorization": f"Bearer {gallery.tokens['ana']}"}) as c:
        sub = c.get(f"/api/submissions/{submission_id}").json()
    assert (sub["title"], sub["description"], sorted(sub["tags"]), sub["app"]) == (
        "Edit board v2 (EU)", want_description, ["eu", "sales", "weekly"], "edit-board-v2-eu")
    if "check" in sub:  # the gallery ran it itself: the panel followed its check
        assert sub["check"]["state"] == "passed", sub["check"]
        assert any(t.startswith("Checking on the gallery") for t in labels), labels

    # -- one toast for the publish (counted once the submissions list has loaded after it) --
    panel.locator(f".nbapps-submission[data-id='{submission_id}']").wait_for()
    toasts = [t for t in page.evaluate("() => window.__nbappsToasts") if "edit.ipynb" in t]
    assert len(toasts) == 1 and "submitted for review" in toasts[0], toasts

    # -- a notebook with the same title is another app: it shows none of these submissions --
    twin = ready_notebook("Edit board v2 (EU)", description="Another one.")
    nbformat.write(twin, str(lab.root / "twin.ipynb"))
    panel = open_notebook(page, lab, "twin.ipynb")
    panel.locator(".nbapps-submissions-box .nbapps-muted",
                  has_text="Nothing submitted from this notebook yet.").wait_for()
    assert panel.locator(".nbapps-submission").count() == 0
    assert page.evaluate(BROKEN_WORDS, panel.element_handle()) == []


def test_the_gallerys_verdict_and_the_reviewers_reason_reach_the_panel(lab: Lab, gallery: Gallery,
                                                                       browser):
    """A notebook that passes the local check but fails the gallery's own run: the panel
    follows the check, shows the gallery's findings (cell numbers as JupyterLab shows them,
    a click jumps to the cell), one error toast; the reviewer's rejection and its reason show
    in the submissions list."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    store_token(lab, gallery)
    nb = ready_notebook("Works here only", description="Needs a setting of this machine.")
    nb.cells.insert(2, nbformat.v4.new_code_cell(f"import os\nmode = os.environ['{LAB_ONLY}']"))
    nbformat.write(nb, str(lab.root / "here.ipynb"))
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.add_init_script(PAGE_RECORDER)
    try:
        _verdict_flow(page, lab, gallery)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "verdict-failure.png"))
        raise
    finally:
        page.close()


def _verdict_flow(page, lab: Lab, gallery: Gallery) -> None:
    page.set_default_timeout(60_000)
    panel = open_notebook(page, lab, "here.ipynb")
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")
    panel.locator(".nbapps-publish").click()
    end = panel.locator(".nbapps-publish-box:is(.nbapps-phase-submitted, .nbapps-phase-failed, "
                        ".nbapps-phase-blocked, .nbapps-phase-rejected)")
    end.wait_for(timeout=300_000)
    assert "nbapps-phase-rejected" in (end.get_attribute("class") or ""), end.inner_text()
    page.screenshot(path=str(ARTIFACTS / "verdict-rejected.png"))
    labels = page.evaluate("() => window.__nbappsLabels")
    assert any(t.startswith("Checking on the gallery") for t in labels), labels
    assert "Failed the gallery's check" in end.locator(".nbapps-publish-label").inner_text()
    # the local check passed: the local findings list has no error
    assert panel.locator(".nbapps-summary.nbapps-ok").count() == 1

    # the gallery's findings, marked as the gallery's, numbered as JupyterLab shows cells
    finding = end.locator(".nbapps-findings-gallery .nbapps-finding[data-code='NBA070']")
    assert "The gallery's findings" in end.inner_text()
    assert finding.get_attribute("data-cell") == "3"
    assert finding.get_attribute("data-cell-index") == "2"
    assert LAB_ONLY in finding.inner_text()
    cells.nth(0).locator(".jp-InputPrompt").click()
    finding.click()
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-Notebook .jp-Cell')[2]"
        ".classList.contains('jp-mod-active')")
    submission_id = int((end.locator(".nbapps-submission-link").get_attribute("href") or "")
                        .rsplit("/", 1)[1])

    # one toast, an error
    item = panel.locator(f".nbapps-submission[data-id='{submission_id}']")
    item.wait_for()
    toasts = [t for t in page.evaluate("() => window.__nbappsToasts") if "here.ipynb" in t]
    assert len(toasts) == 1 and "failed the gallery's check" in toasts[0], toasts
    assert item.locator(".nbapps-state-failed").count() == 1
    line = item.locator(".nbapps-check-line").inner_text()
    assert "Failed the gallery's check: 1 problem" in line, line

    # the reviewer rejects it with a reason; the analyst sees both in the panel
    with httpx.Client(base_url=gallery.url, timeout=30,
                      headers={"Authorization": f"Bearer {gallery.tokens['rita']}"}) as c:
        r = c.post(f"/api/submissions/{submission_id}/decision",
                   json={"decision": "reject", "comment": "Reads a setting only your machine has"})
        assert r.status_code == 200, r.text
    panel.locator(".nbapps-refresh-submissions").click()
    decision = item.locator(".nbapps-decision-reject")
    decision.wait_for()
    assert decision.locator(".nbapps-decision-label").inner_text() == "Rejected by rita"
    assert decision.locator(".nbapps-decision-comment").inner_text() == (
        "Reads a setting only your machine has")
    page.screenshot(path=str(ARTIFACTS / "verdict-reason.png"))
    assert page.evaluate(BROKEN_WORDS, panel.element_handle()) == []
