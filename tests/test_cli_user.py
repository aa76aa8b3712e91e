"""``nbapps user ...`` against a data dir (in-process) and one real subprocess run."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbapps.catalog import open_catalog
from nbapps.cli.main import main
from nbapps.cli.user_cmd import cli_actor


def run(capsys, monkeypatch, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dd(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.delenv("NBAPPS_DB_URL", raising=False)
    return str(tmp_path / "data")


def test_add_generates_password_and_it_works(capsys, monkeypatch, dd):
    code, out, err = run(capsys, monkeypatch, "user", "add", "ana", "--role", "analyst",
                         "--data-dir", dd)
    assert code == 0
    password = out.strip()
    assert len(password) >= 20 and "\n" not in password
    assert "created user ana (analyst)" in err
    cat = open_catalog(f"sqlite:///{dd}/nbapps.db")
    try:
        assert cat.verify_login("ana", password).name == "ana"
        ev = cat.list_audit(action="user.create")[0]
        assert ev.actor == cli_actor() and ev.actor.startswith("cli:")
    finally:
        cat.close()


def test_password_stdin_list_set_role_disable(capsys, monkeypatch, dd):
    code, out, _ = run(capsys, monkeypatch, "user", "add", "rita", "--role", "reviewer",
                       "--password-stdin", "--data-dir", dd, stdin="s3cret-pass\n")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, monkeypatch, "user", "list", "--data-dir", dd)
    assert code == 0 and "rita" in out and "reviewer" in out and "active" in out
    assert run(capsys, monkeypatch, "user", "set-role", "rita", "admin", "--data-dir", dd)[0] == 0
    assert run(capsys, monkeypatch, "user", "disable", "rita", "--data-dir", dd)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "user", "list", "--format", "json", "--data-dir", dd)
    assert json.loads(out) == [{"name": "rita", "role": "admin", "disabled": True,
                                "created_at": json.loads(out)[0]["created_at"]}]
    code, out, _ = run(capsys, monkeypatch, "user", "passwd", "rita", "--password-stdin",
                       "--data-dir", dd, stdin="another-pass\n")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, monkeypatch, "user", "passwd", "rita", "--data-dir", dd)
    assert code == 0 and len(out.strip()) >= 20
    cat = open_catalog(f"sqlite:///{dd}/nbapps.db")
    try:
        actions = [e.action for e in reversed(cat.list_audit())]
        assert actions == ["user.create", "user.role", "user.disable", "user.password",
                           "user.password"]
    finally:
        cat.close()


def test_errors_have_codes_and_exit_status(capsys, monkeypatch, dd):
    run(capsys, monkeypatch, "user", "add", "ana", "--role", "viewer", "--data-dir", dd)
    code, out, err = run(capsys, monkeypatch, "user", "add", "ana", "--role", "viewer",
                         "--data-dir", dd)
    assert code == 1 and out == "" and "NBA307" in err
    code, _, err = run(capsys, monkeypatch, "user", "set-role", "bob", "admin", "--data-dir", dd)
    assert code == 1 and "NBA302" in err
    code, _, err = run(capsys, monkeypatch, "user", "add", "cli:x", "--role", "viewer",
                       "--data-dir", dd)
    assert code == 2 and "NBA311" in err
    code, _, err = run(capsys, monkeypatch, "user", "add", "x", "--role", "viewer",
                       "--password-stdin", "--data-dir", dd, stdin="")
    assert code == 2 and "no password" in err
    with pytest.raises(SystemExit) as exc:
        main(["user", "add", "x", "--role", "root", "--data-dir", dd])
    assert exc.value.code == 2


def test_tokens(capsys, monkeypatch, dd):
    run(capsys, monkeypatch, "user", "add", "ana", "--role", "analyst", "--data-dir", dd)
    code, out, err = run(capsys, monkeypatch, "user", "token", "ana", "--label", "ci",
                         "--data-dir", dd)
    token = out.strip()
    assert code == 0 and token.startswith("nba_") and out == token + "\n"
    code, out, _ = run(capsys, monkeypatch, "user", "token", "ana", "--list", "--format",
                       "json", "--data-dir", dd)
    listed = json.loads(out)
    assert [t["prefix"] for t in listed] == [token[:12]] and listed[0]["label"] == "ci"
    assert token not in out
    code, out, _ = run(capsys, monkeypatch, "user", "token", "ana", "--list", "--data-dir", dd)
    assert token[:12] in out and "active" in out
    code, out, err = run(capsys, monkeypatch, "user", "token", "ana", "--revoke", token[:12],
                         "--data-dir", dd)
    assert code == 0 and out == "" and "revoked" in err
    cat = open_catalog(f"sqlite:///{dd}/nbapps.db")
    try:
        assert cat.list_tokens("ana")[0].revoked_at is not None
    finally:
        cat.close()


def test_db_url_option(capsys, monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    code, _, _ = run(capsys, monkeypatch, "user", "add", "ana", "--role", "viewer",
                     "--db-url", url)
    assert code == 0 and (tmp_path / "other.db").exists()


def test_subprocess_token_only_on_stdout(tmp_path):
    env = {**os.environ, "NBAPPS_DATA_DIR": str(tmp_path / "d")}
    env.pop("NBAPPS_DB_URL", None)
    exe = [sys.executable, "-m", "nbapps.cli.main"]
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run([*exe, "user", "add", "ana", "--role", "analyst"], env=env, cwd=root,
                   check=True, capture_output=True)
    res = subprocess.run([*exe, "user", "token", "ana"], env=env, cwd=root, check=True,
                         capture_output=True, text=True)
    assert res.stdout.startswith("nba_") and res.stdout.count("\n") == 1
    assert res.stderr and "nba_" in res.stderr  # the prefix is named on stderr only


@pytest.fixture
def place(tmp_path: Path, monkeypatch) -> Path:
    """A folder to run commands in, with no data dir set anywhere (default: under HOME)."""
    for name in ("NBAPPS_DATA_DIR", "NBAPPS_DB_URL", "JUPYTER_CONFIG_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / "data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "home" / "jupyter"))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_read_only_commands_never_create_a_catalog_and_say_where_they_looked(
        capsys, monkeypatch, place, tmp_path):
    default = tmp_path / "home" / "data" / "nbapps"
    for argv in (["user", "list"], ["user", "token", "analyst"],
                 ["user", "token", "analyst", "--list"], ["user", "set-role", "a", "admin"],
                 ["user", "passwd", "a"], ["user", "disable", "a"]):
        code, out, err = run(capsys, monkeypatch, *argv)
        assert code == 1 and out == "", argv
        assert f"NBA302: no catalog in data dir {default} (from default)" in err, err
    assert not default.exists() and not list(place.iterdir())


def test_data_dir_comes_from_flag_env_config_file_then_default(capsys, monkeypatch, place,
                                                               tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        assert run(capsys, monkeypatch, "user", "add", folder.name, "--role", "admin",
                   "--data-dir", str(folder))[0] == 0
    # the config file `nbapps serve` reads (here: the current folder) names data dir a
    config = place / "jupyter_nbapps_config.json"
    config.write_text(json.dumps({"NbappsServer": {"data_dir": str(a)}}))
    code, out, _ = run(capsys, monkeypatch, "user", "list")
    assert code == 0 and "a  " in out.splitlines()[1]
    code, _, err = run(capsys, monkeypatch, "user", "token", "nobody")
    assert code == 1 and (f"NBA302: no user named 'nobody' in the catalog of data dir {a} "
                          f"(from config file {config})") in err
    # $NBAPPS_DATA_DIR beats the config file, --data-dir beats both
    monkeypatch.setenv("NBAPPS_DATA_DIR", str(b))
    code, _, err = run(capsys, monkeypatch, "user", "token", "a")
    assert code == 1 and f"data dir {b} (from $NBAPPS_DATA_DIR)" in err
    code, out, _ = run(capsys, monkeypatch, "user", "token", "a", "--data-dir", str(a))
    assert code == 0 and out.startswith("nba_")
    # a Python config file works the same way
    monkeypatch.delenv("NBAPPS_DATA_DIR")
    config.unlink()
    (place / "jupyter_nbapps_config.py").write_text(f"c.NbappsServer.data_dir = {str(b)!r}\n")
    code, out, _ = run(capsys, monkeypatch, "user", "token", "b")
    assert code == 0 and out.startswith("nba_")


def test_serve_finds_the_data_dir_the_same_way(monkeypatch, place, tmp_path):
    from nbapps.server.app import NbappsServer

    config = place / "jupyter_nbapps_config.json"
    config.write_text(json.dumps({"NbappsServer": {"data_dir": str(tmp_path / "cfg")}}))

    def resolved(argv: list[str]) -> Path:
        server = NbappsServer()
        server.initialize(argv)
        return server.resolved_data_dir()

    assert resolved([]) == tmp_path / "cfg"
    monkeypatch.setenv("NBAPPS_DATA_DIR", str(tmp_path / "env"))
    assert resolved([]) == tmp_path / "env"
    assert resolved([f"--data-dir={tmp_path / 'flag'}"]) == tmp_path / "flag"
