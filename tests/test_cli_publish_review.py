"""``nbapps publish`` and ``nbapps review`` end to end against a real server (real kernel run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbapps.client import ClientSettings, GalleryClient
from tests.nbfactory import make_notebook, write_notebook
from tests.server_harness import ROOT, build_archive, thread_gallery


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("cli")) as g:
        yield g


def nbapps(*args: str, env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NBAPPS_GALLERY", "NBAPPS_TOKEN", "NBAPPS_CONFIG")}
    full = {**clean, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **env}
    return subprocess.run([sys.executable, "-m", "nbapps.cli.main", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.kernel
def test_publish_then_review_from_the_command_line(gallery, tmp_path):
    g = gallery
    home = tmp_path / "home"
    home.mkdir()
    nb = write_notebook(make_notebook(meta={"title": "CLI app", "description": "From the CLI.",
                                            "tags": ["cli"]}), tmp_path / "nb" / "cli.ipynb")
    analyst = {"NBAPPS_GALLERY": g.url, "NBAPPS_TOKEN": g.users["ana"].token}

    # local validation, upload, then the gallery's own check: passed → waits for a reviewer
    first = nbapps("publish", str(nb), "--format", "json", env=analyst, home=home)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert set(out) == {"id", "url", "state", "check"} and out["state"] == "submitted"
    assert out["check"]["state"] == "passed" and out["check"]["runs"][0]["cells"]
    assert out["url"] == f"{g.url}/submissions/{out['id']}"
    again = nbapps("publish", str(nb), env=analyst, home=home)
    assert again.returncode == 0, again.stderr
    assert f"#{out['id']}" in again.stdout and "already submitted" in again.stderr
    assert "gallery check passed" in again.stdout

    # the reviewer's token comes from a config file, never from the command line
    config = home / ".config" / "nbapps" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'gallery = "{g.url}"\ntoken = "{g.users["rita"].token}"\n')
    config.chmod(0o600)
    listed = nbapps("review", "list", "--format", "json", env={}, home=home)
    assert listed.returncode == 0, listed.stderr
    assert [v["id"] for v in json.loads(listed.stdout)] == [out["id"]]
    shown = nbapps("review", "show", str(out["id"]), env={}, home=home)
    assert shown.returncode == 0 and "CLI app" in shown.stdout
    own = nbapps("review", "approve", str(out["id"]), env=analyst, home=home)
    assert own.returncode == 1 and "NBA301" in own.stderr
    ok = nbapps("review", "approve", str(out["id"]), "--comment", "fine", env={}, home=home)
    assert ok.returncode == 0, ok.stderr
    assert "approved (live)" in ok.stdout
    with GalleryClient(g.url, g.users["vic"].token) as viewer:
        assert viewer.app("cli-app")["live"]["id"] == out["id"]


@pytest.mark.kernel
def test_publish_follows_the_gallerys_verdict(gallery, tmp_path):
    """Rules only here (``--no-run``): a notebook that fails when run is caught by the gallery's
    check; publish prints its coded findings as ``nbapps validate`` does and exits 1."""
    g = gallery
    home = tmp_path / "home"
    home.mkdir()
    analyst = {"NBAPPS_GALLERY": g.url, "NBAPPS_TOKEN": g.users["alf"].token}
    nb = write_notebook(make_notebook(meta={"title": "Breaks on run"},
                                      extra=["raise ValueError('no data for EU')"]),
                        tmp_path / "nb" / "breaks.ipynb")
    quick = nbapps("publish", str(nb), "--no-run", "--no-wait", env=analyst, home=home)
    assert quick.returncode == 0, quick.stderr
    assert "[validating]" in quick.stdout  # returned right after the upload
    follow = nbapps("publish", str(nb), "--no-run", env=analyst, home=home)
    assert follow.returncode == 1, (follow.stdout, follow.stderr)
    assert "breaks.ipynb:cell 3" in follow.stdout and "NBA070" in follow.stdout
    assert "ValueError" in follow.stdout and "[failed]" in follow.stdout
    with GalleryClient(g.url, g.users["alf"].token) as alf:
        sub = alf.submissions(mine=True, app="breaks-on-run")[0]
        assert sub["state"] == "failed" and sub["check"]["findings"][0]["cell"] == 3
    # the local run catches it first without --no-run: nothing is uploaded a second time
    local = nbapps("publish", str(nb), env=analyst, home=home)
    assert local.returncode == 3 and "NBA070" in local.stdout and "submitted" not in \
        local.stderr


def test_review_actions_and_errors(gallery, tmp_path):
    g = gallery
    home = tmp_path / "home"
    home.mkdir()
    reviewer = {"NBAPPS_GALLERY": g.url, "NBAPPS_TOKEN": g.users["rita"].token}
    analyst = {"NBAPPS_GALLERY": g.url, "NBAPPS_TOKEN": g.users["ana"].token}
    with GalleryClient(g.url, g.users["ana"].token) as ana:
        ids = [ana.submit(build_archive(tmp_path / f"b{i}", make_notebook(
            meta={"title": f"Action {i}"})))["id"] for i in range(3)]
        for i in ids:  # decisions wait for the gallery's verdict
            assert ana.wait_for_check(i, 240)["state"] == "submitted"
    r = nbapps("review", "request-changes", str(ids[0]), "-m", "add a legend", env=reviewer,
               home=home)
    assert r.returncode == 0 and "changes requested" in r.stdout, r.stderr
    r = nbapps("review", "reject", str(ids[1]), "-m", "duplicate", "--format", "json",
               env=reviewer, home=home)
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "rejected", r.stderr
    r = nbapps("review", "withdraw", str(ids[2]), env=analyst, home=home)
    assert r.returncode == 0 and "withdrawn" in r.stdout, r.stderr
    mine = nbapps("review", "list", "--mine", "--format", "json", env=analyst, home=home)
    states = {v["id"]: v["state"] for v in json.loads(mine.stdout)}
    assert [states[i] for i in ids] == ["changes_requested", "rejected", "withdrawn"]
    again = nbapps("review", "approve", str(ids[1]), env=reviewer, home=home)
    assert again.returncode == 1 and "rejected" in again.stderr
    rollback = nbapps("review", "rollback", "action-0", env=reviewer, home=home)
    assert rollback.returncode == 1 and "NBA3" in rollback.stderr
    missing = nbapps("review", "list", env={}, home=home)
    assert missing.returncode == 2 and "NBA336" in missing.stderr
    down = nbapps("review", "list", env={"NBAPPS_GALLERY": "http://127.0.0.1:9",
                                         "NBAPPS_TOKEN": "nba_x"}, home=home)
    assert down.returncode == 1 and "NBA335" in down.stderr
    bad = nbapps("review", "list", env={**reviewer, "NBAPPS_TOKEN": "nba_revoked"}, home=home)
    assert bad.returncode == 1 and "NBA310" in bad.stderr


def test_client_settings_precedence(tmp_path, monkeypatch):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"gallery": "http://file:1", "token": "nba_file"}))
    monkeypatch.setenv("NBAPPS_CONFIG", str(config))
    monkeypatch.delenv("NBAPPS_GALLERY", raising=False)
    monkeypatch.delenv("NBAPPS_TOKEN", raising=False)
    assert ClientSettings.resolve() == ClientSettings("http://file:1", "nba_file", str(config))
    monkeypatch.setenv("NBAPPS_TOKEN", "nba_env")
    assert ClientSettings.resolve().token == "nba_env"
    assert ClientSettings.resolve("http://arg:2/", "nba_arg") == ClientSettings(
        "http://arg:2", "nba_arg", "argument")
