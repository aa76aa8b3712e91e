"""``make demo``: a gallery with the curated apps of ``gallery/``, ready to click through.

1. creates the demo users ``analyst``, ``reviewer``, ``viewer`` and ``admin`` in a demo data dir
   (``./.demo-data`` by default) with freshly generated passwords and API tokens;
2. writes ``./jupyter_nbapps_config.json`` pointing at that data dir (unless a config file is
   already there), so every ``nbapps`` command run in this folder (``nbapps user token
   analyst``, ``nbapps serve``) uses the demo's catalog;
3. starts the gallery server;
4. validates and bundles every app listed in ``gallery/gallery.yaml`` (or every notebook under
   ``gallery/`` without it) and submits each as the analyst through the real HTTP API;
5. records the reviewer's decision of each (``review:`` in gallery.yaml; approve by default) and
   the admin's curation (``featured`` position and ``category``);
6. prints the apps, the accounts, ready-to-paste ``export NBAPPS_GALLERY=… NBAPPS_TOKEN=…``
   lines for the analyst and the reviewer, and the URL last; keeps serving until Ctrl-C
   (``--no-serve`` stops after seeding).

Run again, it reuses the data dir: identical apps are not submitted twice, passwords and the
demo's API tokens are replaced (the previous ones stop working).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .accounts import generate_password
from .catalog import open_catalog
from .client import GalleryClient
from .errors import NbappsError

ROOT = Path(__file__).resolve().parent.parent
DEMO_USERS = {"analyst": "analyst", "reviewer": "reviewer", "viewer": "viewer", "admin": "admin"}
#: users who get an API token (analyst and reviewer for the CLI, admin for the curation)
TOKEN_USERS = ("analyst", "reviewer", "admin")
TOKEN_LABEL = "demo"
CONFIG_FILE = "jupyter_nbapps_config.json"
log = logging.getLogger("nbapps.demo")


@dataclass
class Outcome:
    notebook: Path
    title: str = ""
    slug: str = ""
    state: str = ""
    url: str = ""
    error: str = ""


@dataclass(frozen=True)
class DemoApp:
    notebook: Path
    slug: str | None = None
    decision: str = "approve"
    comment: str = "demo: approved"
    featured: int | None = None
    category: str | None = None


def gallery_apps(gallery_dir: Path) -> list[DemoApp]:
    """The apps of ``gallery.yaml`` (``apps:`` entries with ``path``, optional ``slug``,
    ``featured``, ``category`` and ``review: {decision, comment}``; plain paths work too), else
    every ``*.ipynb`` one level below ``gallery_dir``, approved."""
    listing = gallery_dir / "gallery.yaml"
    if not listing.is_file():
        return [DemoApp(p) for p in sorted(gallery_dir.glob("*/*.ipynb"))
                if ".ipynb_checkpoints" not in p.parts]
    import yaml

    data = yaml.safe_load(listing.read_text("utf-8")) or []
    if isinstance(data, dict):
        data = data.get("apps") or []
    out = []
    for entry in data:
        item = {"path": entry} if isinstance(entry, str) else dict(entry)
        rel = next((item[k] for k in ("path", "notebook", "folder") if item.get(k)), None)
        if not rel:
            continue
        path = gallery_dir / str(rel)
        if path.is_dir():
            found = sorted(path.glob("*.ipynb"))
            path = found[0] if found else path
        review = item.get("review") if isinstance(item.get("review"), dict) else {}
        featured = item.get("featured")
        category = item.get("category")
        out.append(DemoApp(path, slug=item.get("slug"),
                           decision=str(review.get("decision") or "approve"),
                           comment=str(review.get("comment") or "demo: approved"),
                           featured=featured if isinstance(featured, int)
                           and not isinstance(featured, bool) else None,
                           category=str(category) if category else None))
    return out


def gallery_notebooks(gallery_dir: Path) -> list[Path]:
    return [a.notebook for a in gallery_apps(gallery_dir)]


def setup_users(db_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Create or reset the demo users; return (passwords, tokens) by user name.

    Each run replaces the API tokens an earlier run made (label ``demo``): only the tokens
    printed last work."""
    cat = open_catalog(db_url)
    passwords, tokens = {}, {}
    try:
        for name, role in DEMO_USERS.items():
            password = generate_password()
            if cat.find_user(name) is None:
                cat.create_user(name, role, password, actor="demo")
            else:
                cat.set_password(name, password, actor="demo")
                if cat.get_user(name).role.value != role:
                    cat.set_role(name, role, actor="demo")
            passwords[name] = password
            if name in TOKEN_USERS:
                for old in cat.list_tokens(name, include_revoked=False):
                    if old.label == TOKEN_LABEL:
                        cat.revoke_token(name, old.prefix, actor="demo")
                tokens[name], _ = cat.create_token(name, actor="demo", label=TOKEN_LABEL)
    finally:
        cat.close()
    return passwords, tokens


def point_config_at(data_dir: Path, folder: Path | None = None) -> tuple[Path, bool]:
    """Make ``nbapps`` commands run in ``folder`` (default: the current one) use ``data_dir``.

    Writes ``jupyter_nbapps_config.json`` (``c.NbappsServer.data_dir``, which every command
    reads: :mod:`nbapps.datadir_lookup`) unless a config file is already there; returns the
    file and whether it now points at ``data_dir``.
    """
    from .datadir_lookup import CONFIG_BASENAME, configured_data_dir
    from .files import atomic_write_text

    folder = (folder or Path.cwd()).absolute()
    path = folder / CONFIG_FILE
    existing = [folder / f"{CONFIG_BASENAME}{s}" for s in (".py", ".json")]
    if not existing[0].exists() and _written_by_demo(path):
        atomic_write_text(path, json.dumps({"NbappsServer": {"data_dir": str(data_dir)}},
                                           indent=2) + "\n")
        return path, True
    found = configured_data_dir([str(folder)])
    ours = found is not None and Path(found[0]).expanduser().absolute() == data_dir
    return (found[1] if found else next(p for p in existing if p.exists())), ours


def _written_by_demo(path: Path) -> bool:
    """True when ``path`` is missing or holds only a data dir (what the demo writes)."""
    if not path.exists():
        return True
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and list(data) == ["NbappsServer"]
            and isinstance(data["NbappsServer"], dict)
            and list(data["NbappsServer"]) == ["data_dir"])


def port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


class BackgroundServer:
    def __init__(self, argv: list[str]) -> None:
        from .server.app import NbappsServer

        self.app = NbappsServer()
        self.app.initialize(argv)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="nbapps-demo-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self.app.serve(ready=self.ready, install_signals=False))
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def start(self) -> str:
        self.thread.start()
        self.ready.wait(120)
        if self.error is not None:
            raise self.error
        return str(self.app.url).rstrip("/")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.app.request_stop()
            self.thread.join(30)


def build_one(notebook: Path, out: Path) -> bytes:
    """The notebook's source archive, after the rules only: the gallery runs every submission
    itself (its check), so the demo does not run each notebook twice."""
    from .bundle import _refuse, pack_notebook_source
    from .validate import ValidationSettings, validate_notebook

    del out
    report = validate_notebook(notebook, ValidationSettings(execute=False))
    if not report.ok:
        _refuse(notebook, [f.to_dict() for f in report.findings if f.is_error])
    return pack_notebook_source(notebook)[0]


def check_failure(sub: dict[str, Any]) -> str:
    """Why the gallery's check of a demo app did not pass (its first error finding)."""
    check = sub.get("check") or {}
    errors = [f for f in check.get("findings") or [] if f.get("severity") == "error"]
    first = f"{errors[0].get('code')}: {errors[0].get('message')}" if errors else ""
    return f"gallery check {check.get('state')}" + (f" ({first})" if first else "")


def curate(admin: GalleryClient, app: DemoApp, slug: str) -> None:
    """The app's front-page position and section from gallery.yaml, as an admin sets them."""
    if app.featured is None and app.category is None:
        return
    admin.request("PATCH", f"/api/apps/{slug}",
                  json={"featured": app.featured, "category": app.category})


def seed(url: str, tokens: dict[str, str], apps: list[DemoApp], workers: int,
         console: Any) -> list[Outcome]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    outcomes = {a.notebook: Outcome(a.notebook) for a in apps}
    by_notebook = {a.notebook: a for a in apps}
    analyst = GalleryClient(url, tokens["analyst"])
    reviewer = GalleryClient(url, tokens["reviewer"])
    admin = GalleryClient(url, tokens["admin"])
    with tempfile.TemporaryDirectory(prefix="nbapps-demo-") as tmp, Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("submitting, waiting for the gallery's checks, reviewing",
                                 total=len(apps))
        submitted: list[tuple[Path, dict[str, Any]]] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(build_one, a.notebook, Path(tmp) / a.notebook.parent.name):
                       a.notebook for a in apps}
            for future in as_completed(futures):  # every app queued first: checks overlap
                nb = futures[future]
                try:
                    submitted.append((nb, analyst.submit(future.result(),
                                                         slug=by_notebook[nb].slug)))
                except NbappsError as exc:
                    outcomes[nb].error = f"{exc.code}: {exc.message}"
                except Exception as exc:  # noqa: BLE001 - one broken app must not stop the demo
                    outcomes[nb].error = f"{type(exc).__name__}: {exc}"
            for nb, sub in submitted:
                result = outcomes[nb]
                try:
                    app = by_notebook[nb]
                    result.slug = sub.get("app", "")
                    sub = analyst.wait_for_check(sub["id"], timeout=900)
                    result.title = sub.get("title", "")
                    if sub["state"] == "failed":
                        raise NbappsError(check_failure(sub), code="NBA320")
                    if sub["state"] == "submitted":
                        sub = reviewer.decide(sub["id"], app.decision, app.comment)
                    result.state = sub["state"]
                    result.url = f"{browser_url(url)}/app/{result.slug}"
                    if result.slug:
                        curate(admin, app, result.slug)
                except NbappsError as exc:
                    result.error = f"{exc.code}: {exc.message}"
                except Exception as exc:  # noqa: BLE001 - one broken app must not stop the demo
                    result.error = f"{type(exc).__name__}: {exc}"
                progress.console.print(("  [red]✗[/red] " if result.error else
                                        "  [green]✓[/green] ") + nb.parent.name
                                       + (f"  {result.error}" if result.error else ""))
                progress.advance(task)
            for nb in outcomes:
                if outcomes[nb].error and nb not in dict(submitted):
                    progress.console.print(f"  [red]✗[/red] {nb.parent.name}  "
                                           f"{outcomes[nb].error}")
                    progress.advance(task)
    for client in (analyst, reviewer, admin):
        client.close()
    return [outcomes[a.notebook] for a in apps]


def report(console: Any, url: str, outcomes: list[Outcome], passwords: dict[str, str],
           tokens: dict[str, str], data_dir: Path, config: tuple[Path, bool] | None, *,
           stopping: bool = False) -> None:
    """What a new user needs, the URL last: apps, accounts, CLI exports, data dir.

    Plain lines (no table): nothing is cut at the terminal's width, and a URL or a token can be
    copied whole from any terminal or log."""
    from rich.markup import escape

    ok = [o for o in outcomes if not o.error]
    console.print(f"\n[bold]Demo apps[/bold] ({len(ok)} of {len(outcomes)} ready):")
    width = max((len(o.title or o.notebook.parent.name) for o in outcomes), default=0)
    for o in outcomes:
        name = (o.title or o.notebook.parent.name).ljust(width)
        if o.error:
            console.print(f"  [red]✗[/red] {escape(name)}  [red]{escape(o.error)}[/red]")
        else:
            console.print(f"  [green]✓[/green] {escape(name)}  {o.state:<9} {o.url}",
                          soft_wrap=True)
    console.print("\n[bold]Accounts[/bold] (passwords and tokens are new at each run):")
    for name, password in passwords.items():
        console.print(f"  {name:<9} {DEMO_USERS.get(name, ''):<9} password {password}",
                      soft_wrap=True)
    gallery = url.rstrip("/")
    console.print("\n[bold]nbapps CLI[/bold] as the analyst (publish) or the reviewer (review): "
                  "paste one line in a terminal", soft_wrap=True)
    for name in ("analyst", "reviewer"):
        if name in tokens:
            console.print(f"  export NBAPPS_GALLERY={gallery} NBAPPS_TOKEN={tokens[name]}"
                          f"   # {name}", soft_wrap=True, highlight=False)
    console.print(f"\ndata dir: {data_dir}", soft_wrap=True)
    if config is not None:
        path, ours = config
        if ours:
            console.print(f"  nbapps commands run in {path.parent} use it ({path.name}), e.g. "
                          "`.venv/bin/nbapps user token analyst`", soft_wrap=True)
        else:
            console.print(f"  [yellow]{path} sets another data dir[/yellow]: give "
                          f"--data-dir {data_dir} to nbapps commands", soft_wrap=True)
    console.print(f"\n[bold]Gallery:[/bold] {gallery}/   (log in with an account above"
                  f"{'' if stopping else '; Ctrl-C stops it'})", soft_wrap=True,
                  highlight=False)


def browser_url(url: str) -> str:
    """The gallery's URL as printed: ``localhost`` for the loopback address, where each app
    gets an origin of its own (``<slug>.localhost``: the browser caches it, see
    :mod:`nbapps.server.app_origins`)."""
    return url.replace("://127.0.0.1:", "://localhost:", 1)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m nbapps.demo", description=__doc__)
    parser.add_argument("--data-dir", default=".demo-data",
                        help="demo data dir (default: ./.demo-data)")
    parser.add_argument("--gallery-dir", default=str(ROOT / "gallery"))
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="notebooks validated at once")
    parser.add_argument("--no-serve", action="store_true", help="stop after seeding")
    parser.add_argument("--no-config", action="store_true",
                        help=f"do not write ./{CONFIG_FILE} (which points nbapps commands run "
                        "here at the demo's data dir)")
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    data_dir = Path(args.data_dir).absolute()
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    apps = gallery_apps(Path(args.gallery_dir))
    if not apps:
        console.print(f"[red]no apps found in {args.gallery_dir}[/red]")
        return 1
    passwords, tokens = setup_users(db_url)
    config = point_config_at(data_dir) if not args.no_config else None
    port = args.port if port_free(args.ip, args.port) else 0
    server = BackgroundServer([f"--port={port}", f"--ip={args.ip}", f"--data-dir={data_dir}",
                               f"--db-url={db_url}", "--log-level=WARN"])
    url = server.start()
    try:
        outcomes = seed(url, tokens, apps, max(1, args.workers), console)
        report(console, browser_url(url), outcomes, passwords, tokens, data_dir, config,
               stopping=args.no_serve)
        if args.no_serve:
            return 0 if not any(o.error for o in outcomes) else 1
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            if not server.thread.is_alive():
                break
        return 0
    finally:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
