"""``python -m nbapps.demo --no-serve`` on a one-app gallery (real kernel, real HTTP)."""
from __future__ import annotations

import pytest

from nbapps import demo
from nbapps.catalog import open_catalog
from tests.nbfactory import make_notebook, write_notebook


@pytest.mark.kernel
def test_demo_seeds_users_and_apps(tmp_path, capsys):
    gallery = tmp_path / "gallery"
    write_notebook(make_notebook(meta={"title": "Demo one", "description": "d", "tags": ["x"]}),
                   gallery / "one" / "one.ipynb")
    (gallery / "gallery.yaml").write_text("- one\n")
    data_dir = tmp_path / "demo-data"
    code = demo.main(["--no-serve", "--data-dir", str(data_dir), "--gallery-dir", str(gallery),
                      "--port", "0", "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Demo one" in out and "approved" in out and "Gallery:" in out
    cat = open_catalog(f"sqlite:///{data_dir / 'nbapps.db'}")
    try:
        assert {u.name: u.role.value for u in cat.list_users()} == demo.DEMO_USERS
        live = cat.list_apps()
        assert [a.title for a in live.items] == ["Demo one"]
    finally:
        cat.close()


def test_gallery_listing_fallback(tmp_path):
    write_notebook(make_notebook(), tmp_path / "b" / "b.ipynb")
    write_notebook(make_notebook(), tmp_path / "a" / "a.ipynb")
    assert [p.parent.name for p in demo.gallery_notebooks(tmp_path)] == ["a", "b"]
    (tmp_path / "gallery.yaml").write_text(
        "version: 1\napps:\n  - slug: bee\n    path: b/b.ipynb\n    review:\n"
        "      decision: request_changes\n      comment: more\n")
    assert demo.gallery_apps(tmp_path) == [demo.DemoApp(tmp_path / "b" / "b.ipynb", "bee",
                                                        "request_changes", "more")]
