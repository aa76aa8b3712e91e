"""`make demo`'s layout with a real confined runner: the data dir inside the checkout that holds
the editable install. The app starts (Voilà and the kernel import what they need from the
checkout) and its code still cannot read the gallery's files (issue 11, the sandbox part)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from nbformat.v4 import new_code_cell

from nbapps import sandbox
from tests.test_runner_fixtures import Gallery, fast_settings, widget_app_notebook, write_bundle

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not sandbox.available(), reason="Landlock is not available")]

ROOT = Path(__file__).resolve().parents[1]

PROBE = """import nbapps, pathlib
print("IMPORTED", nbapps.__name__)
for name in ("cookie_secret", "bundles/other/app.ipynb"):
    try:
        (pathlib.Path({root!r}) / name).read_bytes()
        print("PROBE", name, "READ")
    except PermissionError:
        print("PROBE", name, "DENIED")
"""


def test_an_app_runs_with_the_data_dir_inside_the_checkout():
    root = Path(tempfile.mkdtemp(prefix=".pytest-demo-layout-", dir=ROOT))
    gallery = None
    try:
        (root / "cookie_secret").write_text("gallery-only")
        nb = widget_app_notebook()
        nb.cells.append(new_code_cell(PROBE.format(root=str(root)),
                                      metadata={"tags": ["widget"]}))
        demo = write_bundle(root / "bundles" / "demo", nb)
        write_bundle(root / "bundles" / "other", widget_app_notebook())
        gallery = Gallery(root, {"demo": demo},
                          runner=fast_settings(custom_pool_size=0, protected_paths=(str(root),)))
        gallery.start()
        gallery.ready("demo")
        with httpx.Client(timeout=120) as client:
            page = client.get(gallery.url("/apps/demo/"))
    finally:
        if gallery is not None:
            gallery.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert page.status_code == 200, page.text[:500]
    assert "RESULT 3 x 0.5 9" in page.text
    assert "IMPORTED nbapps" in page.text
    assert "PROBE cookie_secret DENIED" in page.text
    assert "PROBE bundles/other/app.ipynb DENIED" in page.text
    assert "gallery-only" not in page.text
