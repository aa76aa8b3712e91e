"""The demo gallery behind JupyterLab on Binder: jupyter-server-proxy settings and seeding helpers.

``binder/jupyter_server_config.py`` registers :func:`gallery_server` with jupyter-server-proxy, so
``<jupyter base_url>nbapps-gallery/`` starts ``nbapps serve`` on first use and proxies to it, and
JupyterLab's launcher shows an "App gallery" tile. ``binder/postBuild`` seeds the gallery with
``python -m nbapps.demo --no-serve`` and then runs ``python -m nbapps.binder_proxy setup``, which
gives the demo users fresh passwords, writes them to ``~/nbapps-demo-credentials.txt`` and onto
the login page, and stores an analyst API token for the lab extension.

The gallery runs under the proxy's own path: jupyter-server-proxy passes requests on with their
full path (``absolute_url: True``) and starts the gallery with
``--NbappsServer.base_url=<jupyter base_url>nbapps-gallery/``, so its links, redirects, cookie
paths and app runners (``<prefix>apps/<slug>/``, Voilà's ``base_url``) all carry the prefix and
nothing needs rewriting. The gallery's XSRF cookie is renamed (``_nbapps_xsrf``, see
``binder/jupyter_nbapps_config.py``) so it cannot collide with Jupyter's ``_xsrf``.

The lab extension publishes to the gallery directly (``http://127.0.0.1:<port><prefix>``); its
URL holds ``{base_url}``, which the extension's server part fills in with the Jupyter server's
base URL, known only at start (Binder's per-user prefix). ``setup`` writes the analyst's token
to a file the extension imports at start (``NbappsLabApp.gallery_token_file``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import atomic_write_text

log = logging.getLogger("nbapps.binder")

#: the jupyter-server-proxy server name: also the URL path under the Jupyter server
NAME = "nbapps-gallery"
#: where postBuild installs the gallery's config file and the launcher icon (under sys.prefix)
SHARE_SUBDIR = ("share", "nbapps-binder")
ICON_FILE = "app-gallery.svg"
CONFIG_FILE = "jupyter_nbapps_config.py"
#: the port the gallery listens on inside the container (fixed, so the lab extension can be
#: pointed at it); NBAPPS_BINDER_GALLERY_PORT overrides it (the Binder simulation test does)
DEFAULT_PORT = 18866
ENV_PORT = "NBAPPS_BINDER_GALLERY_PORT"
ENV_DATA_DIR = "NBAPPS_BINDER_DATA_DIR"
CREDENTIALS_FILE = "nbapps-demo-credentials.txt"
#: the analyst's API token for the lab extension, in the data dir (0600)
LAB_TOKEN_FILE = "lab-token"
#: where the login-page override lives in the data dir (NbappsServer.template_paths)
TEMPLATES_SUBDIR = "binder-templates"
BUILTIN_LINK = "nbapps-builtin"
ROLE_HELP = {
    "analyst": "submits apps (use it in JupyterLab's nbapps panel, or `nbapps publish`)",
    "reviewer": "approves or sends back submissions (Review queue)",
    "viewer": "opens live apps",
    "admin": "manages users and reads the audit log",
}

# -- locations ------------------------------------------------------------------------------------


def share_dir() -> Path:
    return Path(sys.prefix).joinpath(*SHARE_SUBDIR)


def demo_data_dir() -> Path:
    """The seeded gallery's data dir: ``$NBAPPS_BINDER_DATA_DIR`` or ``~/.nbapps-demo``."""
    return Path(os.environ.get(ENV_DATA_DIR) or "~/.nbapps-demo").expanduser().absolute()


def gallery_port() -> int:
    raw = os.environ.get(ENV_PORT, "")
    return int(raw) if raw.strip() else DEFAULT_PORT


def internal_url(jupyter_base_url: str = "{base_url}") -> str:
    """The gallery as seen from inside the container (what the lab extension publishes to).

    By default with the ``{base_url}`` placeholder that the lab extension fills in at start."""
    return f"http://127.0.0.1:{gallery_port()}{jupyter_base_url}{NAME}/"


def lab_token_path(data_dir: Path | None = None) -> Path:
    return (data_dir or demo_data_dir()) / LAB_TOKEN_FILE


def credentials_path() -> Path:
    return Path("~").expanduser() / CREDENTIALS_FILE


# -- jupyter-server-proxy -------------------------------------------------------------------------


def nbapps_command() -> list[str]:
    """The ``nbapps`` script of this environment. Not ``python -m``: that would put the current
    folder first on ``sys.path``, and on Binder the current folder is the repository itself."""
    script = Path(sys.executable).parent / "nbapps"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "nbapps.cli.main"]


def gallery_server(data_dir: Path | None = None, share: Path | None = None) -> dict[str, Any]:
    """The ``c.ServerProxy.servers["nbapps-gallery"]`` entry (jupyter-server-proxy >= 4.5)."""
    share = share or share_dir()
    data = data_dir or demo_data_dir()
    icon = share / ICON_FILE
    return {
        "command": [
            *nbapps_command(), "serve", "--ip=127.0.0.1", "--port={port}", f"--data-dir={data}",
            f"--config={share / CONFIG_FILE}", f"--base-url={{base_url}}{NAME}/",
        ],
        "port": gallery_port(),
        # the first start creates the runtime folders and opens the catalog: a few seconds
        "timeout": 60,
        # the gallery serves everything under the proxy's path itself (--base-url above)
        "absolute_url": True,
        "new_browser_tab": True,
        # Jupyter's own credentials are none of the gallery's business; a Jupyter token sent as
        # "Authorization: token ..." would otherwise be read as a (wrong) gallery API token
        "request_headers_override": {"Authorization": ""},
        "launcher_entry": {
            "enabled": True,
            "title": "App gallery",
            "icon_path": str(icon) if icon.is_file() else "",
            "path_info": f"{NAME}/",
            "category": "Notebook",
        },
    }


# -- setup after seeding --------------------------------------------------------------------------


def reset_passwords(data_dir: Path) -> dict[str, tuple[str, str]]:
    """New passwords for the demo users: ``{name: (role, password)}``."""
    from .accounts import generate_password
    from .catalog import open_catalog
    from .datadir import default_db_url
    from .demo import DEMO_USERS

    out: dict[str, tuple[str, str]] = {}
    cat = open_catalog(default_db_url(data_dir))
    try:
        for name, role in DEMO_USERS.items():
            if cat.find_user(name) is None:
                raise SystemExit(f"demo user {name!r} missing in {data_dir}: seed it first "
                                 "with `python -m nbapps.demo --no-serve --data-dir ...`")
            password = generate_password()
            cat.set_password(name, password, actor="binder")
            out[name] = (role, password)
    finally:
        cat.close()
    return out


def analyst_token(data_dir: Path) -> str:
    from .catalog import open_catalog
    from .datadir import default_db_url

    cat = open_catalog(default_db_url(data_dir))
    try:
        token, _ = cat.create_token("analyst", actor="binder", label="JupyterLab on Binder")
    finally:
        cat.close()
    return token


def credentials_text(users: dict[str, tuple[str, str]]) -> str:
    lines = [
        "nbapps demo gallery: accounts",
        "",
        "Open the gallery from JupyterLab's launcher (tile \"App gallery\") or at",
        f"<this Jupyter server>/{NAME}/ and log in with one of these accounts.",
        "Passwords are new at every build of this environment.",
        "",
        f"{'user':<10} {'password':<24} what it is for",
    ]
    for name, (role, password) in users.items():
        lines.append(f"{name:<10} {password:<24} {ROLE_HELP.get(role, role)}")
    return "\n".join(lines) + "\n"


def login_template(users: dict[str, tuple[str, str]]) -> str:
    """A ``login.html`` that adds the demo accounts above the built-in login form."""
    from markupsafe import escape

    rows = "\n".join(
        f"      <tr><td><code>{escape(name)}</code></td><td><code>{escape(password)}</code></td>"
        f"<td>{escape(ROLE_HELP.get(role, role))}</td></tr>"
        for name, (role, password) in users.items())
    return (
        "{# written by `python -m nbapps.binder_proxy setup`: the Binder demo's accounts #}\n"
        f'{{% extends "{BUILTIN_LINK}/login.html" %}}\n'
        "{% block content %}\n"
        '<section class="panel">\n'
        "  <h2>Demo accounts</h2>\n"
        '  <p class="muted small">This gallery runs inside your Binder session only. '
        f"The same list is in <code>~/{CREDENTIALS_FILE}</code>.</p>\n"
        '  <div class="table-wrap"><table>\n'
        "    <thead><tr><th>user</th><th>password</th><th>for</th></tr></thead>\n"
        f"    <tbody>\n{rows}\n    </tbody>\n"
        "  </table></div>\n"
        "</section>\n"
        "{{ super() }}\n"
        "{% endblock %}\n"
    )


def write_login_override(data_dir: Path, users: dict[str, tuple[str, str]]) -> Path:
    """``<data>/binder-templates/login.html`` extending the built-in one (reached through a
    ``nbapps-builtin`` link to the package's templates, so nothing is copied)."""
    from .server.context import TEMPLATES_DIR

    folder = data_dir / TEMPLATES_SUBDIR
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / BUILTIN_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(TEMPLATES_DIR).resolve(), target_is_directory=True)
    atomic_write_text(folder / "login.html", login_template(users), mode=0o600)
    return folder


def store_lab_token(token: str, data_dir: Path) -> Path:
    """The analyst's token for the lab extension, which stores it for the gallery URL at start
    (``NbappsLabApp.gallery_token_file``: the URL's Jupyter base URL is not known before)."""
    path = lab_token_path(data_dir)
    atomic_write_text(path, token + "\n", mode=0o600)
    return path


def setup(data_dir: Path) -> None:
    users = reset_passwords(data_dir)
    atomic_write_text(credentials_path(), credentials_text(users), mode=0o600)
    folder = write_login_override(data_dir, users)
    lab = store_lab_token(analyst_token(data_dir), data_dir)
    print(f"demo accounts: {credentials_path()}")
    print(f"login page override: {folder / 'login.html'}")
    print(f"lab extension: analyst token for {internal_url()} in {lab}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.binder_proxy",
                                     description="Binder demo helpers (run by binder/postBuild).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup", help="after `python -m nbapps.demo --no-serve`: new passwords "
                       "into ~/" + CREDENTIALS_FILE + " and the login page, a lab token")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the seeded data dir (default: $NBAPPS_BINDER_DATA_DIR or ~/.nbapps-demo)")
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[], None]] = {
        "setup": lambda: setup((args.data_dir or demo_data_dir()).expanduser().absolute()),
    }
    commands[args.command]()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
