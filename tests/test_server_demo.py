"""``python -m nbapps.demo --no-serve`` on a one-app gallery (real kernel, real HTTP)."""
from __future__ import annotations

import json

import pytest

from nbapps import demo
from nbapps.catalog import open_catalog
from nbapps.cli.main import main as cli_main
from nbapps.errors import AuthRequired
from tests.nbfactory import make_notebook, write_notebook


@pytest.mark.kernel
def test_demo_seeds_users_and_apps(tmp_path, capsys, monkeypatch):
    gallery = tmp_path / "gallery"
    write_notebook(make_notebook(meta={"title": "Demo one", "description": "d", "tags": ["x"]}),
                   gallery / "one" / "one.ipynb")
    (gallery / "gallery.yaml").write_text(
        "apps:\n  - path: one/one.ipynb\n    featured: 1\n    category: Sales & Finance\n")
    work = tmp_path / "checkout"  # the demo runs where `make demo` runs: the checkout
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("NBAPPS_DATA_DIR", raising=False)
    monkeypatch.delenv("NBAPPS_DB_URL", raising=False)
    code = demo.main(["--no-serve", "--gallery-dir", str(gallery), "--port", "0",
                      "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    data_dir = work / ".demo-data"
    assert "Demo one" in out and "approved" in out
    # the URL comes last, whole; ready-to-paste exports for the analyst and the reviewer
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines[-1].startswith("Gallery: http://localhost:")  # apps at <slug>.localhost
    url = lines[-1].split()[1].rstrip("/")
    assert f"{url}/app/demo-one" in out
    exports = {ln.split("# ")[-1]: ln.split() for ln in lines
               if ln.strip().startswith("export NBAPPS_GALLERY=")}
    assert set(exports) == {"analyst", "reviewer"}
    assert exports["analyst"][1] == f"NBAPPS_GALLERY={url}"
    tokens = {who: words[2].split("=", 1)[1] for who, words in exports.items()}
    passwords = {ln.split()[0]: ln.split()[-1] for ln in lines if " password " in ln}
    assert set(passwords) == set(demo.DEMO_USERS)
    cat = open_catalog(f"sqlite:///{data_dir / 'nbapps.db'}")
    try:
        assert {u.name: u.role.value for u in cat.list_users()} == demo.DEMO_USERS
        live = cat.list_apps()
        assert [(a.title, a.featured, a.category) for a in live.items] == [
            ("Demo one", 1, "sales-finance")]
        # the printed secrets are the live ones
        assert cat.verify_login("viewer", passwords["viewer"]).name == "viewer"
        assert {who: cat.verify_token(t).name for who, t in tokens.items()} == {
            "analyst": "analyst", "reviewer": "reviewer"}
    finally:
        cat.close()
    # `nbapps user token analyst` run here (the README's command) finds the demo's catalog
    config = work / demo.CONFIG_FILE
    assert json.loads(config.read_text()) == {"NbappsServer": {"data_dir": str(data_dir)}}
    before = capsys.readouterr()
    assert cli_main(["user", "token", "analyst"]) == 0
    assert capsys.readouterr().out.startswith("nba_"), before
    # a second run replaces the demo tokens: the first ones stop working
    assert demo.setup_users(f"sqlite:///{data_dir / 'nbapps.db'}")
    cat = open_catalog(f"sqlite:///{data_dir / 'nbapps.db'}")
    try:
        with pytest.raises(AuthRequired):
            cat.verify_token(tokens["analyst"])
    finally:
        cat.close()


def test_config_file_is_not_taken_over(tmp_path):
    mine = tmp_path / demo.CONFIG_FILE
    mine.write_text('{"NbappsServer": {"data_dir": "/srv/real", "port": 9000}}')
    path, ours = demo.point_config_at(tmp_path / "demo", tmp_path)
    assert (path, ours) == (mine, False) and "9000" in mine.read_text()
    # a file the demo wrote is updated for the new data dir
    mine.write_text('{"NbappsServer": {"data_dir": "/old"}}')
    assert demo.point_config_at(tmp_path / "demo", tmp_path) == (mine, True)
    assert str(tmp_path / "demo") in mine.read_text()


def test_gallery_listing_fallback(tmp_path):
    write_notebook(make_notebook(), tmp_path / "b" / "b.ipynb")
    write_notebook(make_notebook(), tmp_path / "a" / "a.ipynb")
    assert [p.parent.name for p in demo.gallery_notebooks(tmp_path)] == ["a", "b"]
    (tmp_path / "gallery.yaml").write_text(
        "version: 1\napps:\n  - slug: bee\n    path: b/b.ipynb\n    review:\n"
        "      decision: request_changes\n      comment: more\n")
    assert demo.gallery_apps(tmp_path) == [demo.DemoApp(tmp_path / "b" / "b.ipynb", "bee",
                                                        "request_changes", "more")]
