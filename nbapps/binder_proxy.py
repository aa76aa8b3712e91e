"""The demo gallery behind JupyterLab on Binder: jupyter-server-proxy settings and seeding helpers.

``binder/jupyter_server_config.py`` registers :func:`gallery_server` with jupyter-server-proxy, so
``<jupyter base_url>nbapps-gallery/`` starts ``nbapps serve`` on first use and proxies to it, and
JupyterLab's launcher shows an "App gallery" tile. ``binder/postBuild`` seeds the gallery with
``python -m nbapps.demo --no-serve`` and then runs ``python -m nbapps.binder_proxy setup``, which
gives the demo users fresh passwords, writes them to ``~/nbapps-demo-credentials.txt`` and onto
the login page, and stores an analyst API token for the lab extension.

Why responses are rewritten: the gallery serves every page from ``/`` (``NbappsServer`` has no
base-URL setting), while the browser reaches it under ``<base_url>nbapps-gallery/``.
jupyter-server-proxy strips that prefix from requests (``absolute_url: False``) and, from 4.5 on,
puts it back on redirect ``Location`` headers; :func:`rewrite_response` does the rest: it adds the
prefix to root-relative ``href``/``src``/``action`` URLs of HTML pages and scopes the gallery's
cookies to the prefix (``Path=``), so they never reach JupyterLab or another user's server on a
shared Binder host. The gallery's XSRF cookie is renamed (``_nbapps_xsrf``, see
``binder/jupyter_nbapps_config.py``) so it cannot collide with Jupyter's ``_xsrf``.
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def internal_url() -> str:
    """The gallery as seen from inside the container (what the lab extension publishes to)."""
    return f"http://127.0.0.1:{gallery_port()}"


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
            f"--config={share / CONFIG_FILE}",
        ],
        "port": gallery_port(),
        # the first start creates the runtime folders and opens the catalog: a few seconds
        "timeout": 60,
        "absolute_url": False,
        "new_browser_tab": True,
        # Jupyter's own credentials are none of the gallery's business; a Jupyter token sent as
        # "Authorization: token ..." would otherwise be read as a (wrong) gallery API token
        "request_headers_override": {"Authorization": ""},
        "rewrite_response": rewrite_response,
        "launcher_entry": {
            "enabled": True,
            "title": "App gallery",
            "icon_path": str(icon) if icon.is_file() else "",
            "path_info": f"{NAME}/",
            "category": "Notebook",
        },
    }


def proxy_prefix(request_path: str, name: str = NAME) -> str:
    """``/user/ana/nbapps-gallery/app/x`` → ``/user/ana/nbapps-gallery`` (the browser-side
    prefix of the gallery: the Jupyter base URL plus the server name)."""
    marker = f"/{name}"
    start = 0
    while True:
        i = request_path.find(marker, start)
        if i < 0:
            return marker
        end = i + len(marker)
        if end == len(request_path) or request_path[end] == "/":
            return request_path[:end]
        start = end


#: a root-relative URL in an HTML attribute (``href="/..."``), not a scheme-relative ``//host``
_ATTR_URL = re.compile(rb"""(\s(?:href|src|action|formaction|poster)\s*=\s*)(["'])/(?![/\\])""",
                       re.IGNORECASE)
_COOKIE_PATH = re.compile(r"(;\s*path=)/(?=\s*;|\s*$)", re.IGNORECASE)


def rewrite_html(body: bytes, prefix: str) -> bytes:
    """Prefix every root-relative URL of an HTML attribute with ``prefix``."""
    raw_prefix = prefix.rstrip("/").encode()
    return _ATTR_URL.sub(lambda m: m.group(1) + m.group(2) + raw_prefix + b"/", body)


def rewrite_set_cookie(value: str, prefix: str) -> str:
    """``...; Path=/`` → ``...; Path=<prefix>``: the gallery's cookies stay under its prefix."""
    return _COOKIE_PATH.sub(lambda m: m.group(1) + prefix.rstrip("/"), value)


def rewrite_response(response: Any, request: Any) -> None:
    """jupyter-server-proxy ``rewrite_response`` hook (arguments are asked for by name)."""
    prefix = proxy_prefix(request.path)
    headers = response.headers
    cookies = headers.get_list("Set-Cookie") if hasattr(headers, "get_list") else []
    if cookies:
        del headers["Set-Cookie"]
        for value in cookies:
            headers.add("Set-Cookie", rewrite_set_cookie(value, prefix))
    if not headers.get("Content-Type", "").lower().startswith("text/html") or not response.body:
        return
    body = response.body
    if headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
        del headers["Content-Encoding"]
    response.body = rewrite_html(body, prefix)


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


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


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
    atomic_write(folder / "login.html", login_template(users))
    return folder


def store_lab_token(token: str, url: str) -> Path:
    """Give the lab extension the analyst's token for the in-container gallery URL."""
    from jupyter_core.paths import jupyter_data_dir

    from .labserver.credentials import CredentialStore

    # NbappsLabApp.data_dir's default, and the file name its CredentialStore uses
    path = Path(jupyter_data_dir()) / "nbapps" / "lab-credentials.json"
    CredentialStore(path).set(url, token)
    return path


def setup(data_dir: Path) -> None:
    users = reset_passwords(data_dir)
    atomic_write(credentials_path(), credentials_text(users))
    folder = write_login_override(data_dir, users)
    lab = store_lab_token(analyst_token(data_dir), internal_url())
    print(f"demo accounts: {credentials_path()}")
    print(f"login page override: {folder / 'login.html'}")
    print(f"lab extension: analyst token stored for {internal_url()} in {lab}")


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
