"""A gallery provisioned by the operator (Binder's postBuild, JupyterHub, an admin):
``NbappsLabApp.gallery_url`` with ``{base_url}`` and ``NbappsLabApp.gallery_token_file``.

Real Jupyter server (pytest-jupyter), fixtures scoped to this module as in test_labserver.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures, scoped to this module

from nbapps.labserver.credentials import CredentialStore

TOKEN = "nba_" + "P1r2O3v4I5s6I7o8N9e0D1t2O3k4E5n6X7y8Z9a0B1c"
OTHER = "nba_" + "U1s2E3r4S5e6T7t8H9i0S1o2N3e4T5h6E7m8S9e0L1f"
TEMPLATE = "http://127.0.0.1:18866{base_url}nbapps-gallery/"


@pytest.fixture
def jp_base_url() -> str:
    return "/user/ana/"


@pytest.fixture
def lab_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "lab-data"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "provisioned-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def stored_before() -> dict[str, str]:
    """Tokens the user had stored before this server started (url → token)."""
    return {}


@pytest.fixture
def jp_server_config(lab_data_dir: Path, token_file: Path, stored_before: dict[str, str]
                     ) -> dict[str, Any]:
    store = CredentialStore(lab_data_dir / "lab-credentials.json")
    for url, token in stored_before.items():
        store.set(url, token)
    return {
        "ServerApp": {"jpserver_extensions": {"nbapps.labserver": True}},
        "NbappsLabApp": {"data_dir": str(lab_data_dir), "gallery_url": TEMPLATE,
                         "gallery_token_file": str(token_file),
                         "gallery_launch_path": "nbapps-gallery/healthz"},
    }


@pytest.fixture
def settings(jp_fetch, jp_asyncio_loop):
    def get(**params: str) -> dict[str, Any]:
        r = jp_asyncio_loop.run_until_complete(jp_fetch("nbapps", "settings", params=params))
        return json.loads(r.body)
    return get


EXPANDED = "http://127.0.0.1:18866/user/ana/nbapps-gallery"


def test_default_gallery_gets_the_server_base_url_and_the_token(jp_serverapp, settings,
                                                                lab_data_dir):
    lab = jp_serverapp.web_app.settings["nbapps_lab"]
    assert lab.gallery_url == EXPANDED + "/"
    # no gallery asked for: the front end learns the default and that a token is stored for it
    answer = settings()
    assert answer["gallery_url"] == EXPANDED
    assert answer["token"]["set"] is True and answer["token"]["masked"].startswith("nba_P1r2")
    assert TOKEN not in json.dumps(answer)
    assert CredentialStore(lab_data_dir / "lab-credentials.json").get(EXPANDED) == TOKEN
    # the path the panel requests once to start that gallery (a jupyter-server-proxy entry)
    assert answer["launch_path"] == "nbapps-gallery/healthz"
    assert "launch_path" not in settings(gallery="https://other.example/g")


@pytest.mark.parametrize("stored_before", [{EXPANDED: OTHER}])
def test_a_token_the_user_stored_is_kept(jp_serverapp, settings, lab_data_dir):
    assert settings()["token"]["masked"].startswith("nba_U1s2")
    assert CredentialStore(lab_data_dir / "lab-credentials.json").get(EXPANDED) == OTHER


@pytest.mark.parametrize("token_file", [Path("/nonexistent/nbapps-token")])
def test_a_missing_token_file_is_no_error(jp_serverapp, settings):
    answer = settings()
    assert answer["gallery_url"] == EXPANDED and answer["token"]["set"] is False


def test_a_bad_token_file_is_logged_not_fatal(jp_server_config, token_file,
                                              jp_configurable_serverapp, capfd):
    token_file.write_text("not a token at all\n")
    app = jp_configurable_serverapp()
    lab = app.web_app.settings["nbapps_lab"]
    assert lab.credentials.get(EXPANDED) is None
    assert "not used: NBA381" in capfd.readouterr().err


HUB_TOKEN = "5f1c0ffee0ddba11deadbeef00c0ffee"


@pytest.mark.parametrize("token_file", [Path("/nonexistent/nbapps-token")])
def test_under_a_hub_the_default_gallery_gets_the_hub_token(monkeypatch, jp_server_config,
                                                            jp_configurable_serverapp):
    """Under JupyterHub the panel needs no token set-up for the default gallery (a Hub service
    accepting Hub tokens); the Hub token never goes to any other gallery, and a token the
    user stores wins."""
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", HUB_TOKEN)
    lab = jp_configurable_serverapp().web_app.settings["nbapps_lab"]
    assert lab.token_for(EXPANDED) == HUB_TOKEN
    assert lab.token_for(EXPANDED + "/") == HUB_TOKEN
    status = lab.token_status(EXPANDED)
    assert status == {"set": True, "masked": None, "via": "jupyterhub"}
    assert HUB_TOKEN not in json.dumps(status)
    assert lab.token_for("https://other.example/g") is None
    assert lab.token_status("https://other.example/g")["set"] is False
    lab.credentials.set(EXPANDED, OTHER)
    assert lab.token_for(EXPANDED) == OTHER
    lab.credentials.delete(EXPANDED)
    lab.use_hub_token = False
    assert lab.token_for(EXPANDED) is None
