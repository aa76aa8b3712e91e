"""``make demo``: a gallery with the curated apps of ``gallery/``, ready to click through.

1. creates the demo users ``analyst``, ``reviewer``, ``viewer`` and ``admin`` in a demo data dir
   (``./.demo-data`` by default) with freshly generated passwords (printed at the end);
2. starts the gallery server;
3. validates and bundles every app listed in ``gallery/gallery.yaml`` (or every notebook under
   ``gallery/`` without it) and submits each as the analyst through the real HTTP API;
4. records the reviewer's decision of each (``review:`` in gallery.yaml; approve by default),
   prints the report and the URL, and keeps serving until Ctrl-C (``--no-serve`` stops after
   seeding).

Run again, it reuses the data dir: identical apps are not submitted twice, passwords are reset.
"""
from __future__ import annotations

import argparse
import asyncio
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


def gallery_apps(gallery_dir: Path) -> list[DemoApp]:
    """The apps of ``gallery.yaml`` (``apps:`` entries with ``path``, optional ``slug`` and
    ``review: {decision, comment}``; plain paths work too), else every ``*.ipynb`` one level
    below ``gallery_dir``, approved."""
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
        out.append(DemoApp(path, slug=item.get("slug"),
                           decision=str(review.get("decision") or "approve"),
                           comment=str(review.get("comment") or "demo: approved")))
    return out


def gallery_notebooks(gallery_dir: Path) -> list[Path]:
    return [a.notebook for a in gallery_apps(gallery_dir)]


def setup_users(db_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Create or reset the demo users; return (passwords, tokens) by user name."""
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
            if name in ("analyst", "reviewer"):
                tokens[name], _ = cat.create_token(name, actor="demo", label="demo")
    finally:
        cat.close()
    return passwords, tokens


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
    from .bundle import build_bundle, pack_bundle

    info = build_bundle(notebook, out)
    return pack_bundle(info.path)


def seed(url: str, tokens: dict[str, str], apps: list[DemoApp], workers: int,
         console: Any) -> list[Outcome]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    outcomes = {a.notebook: Outcome(a.notebook) for a in apps}
    by_notebook = {a.notebook: a for a in apps}
    analyst = GalleryClient(url, tokens["analyst"])
    reviewer = GalleryClient(url, tokens["reviewer"])
    with tempfile.TemporaryDirectory(prefix="nbapps-demo-") as tmp, Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("validating, bundling, submitting, reviewing",
                                 total=len(apps))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(build_one, a.notebook, Path(tmp) / a.notebook.parent.name):
                       a.notebook for a in apps}
            for future in as_completed(futures):
                nb = futures[future]
                result = outcomes[nb]
                try:
                    app = by_notebook[nb]
                    sub = analyst.submit(future.result(), slug=app.slug)
                    result.slug = sub.get("app", "")
                    detail = analyst.submission(sub["id"])
                    result.title = detail.get("title", "")
                    if sub["state"] == "submitted":
                        sub = reviewer.decide(sub["id"], app.decision, app.comment)
                    result.state = sub["state"]
                    result.url = f"{url}/app/{result.slug}"
                except NbappsError as exc:
                    result.error = f"{exc.code}: {exc.message}"
                except Exception as exc:  # noqa: BLE001 - one broken app must not stop the demo
                    result.error = f"{type(exc).__name__}: {exc}"
                progress.console.print(("  [red]✗[/red] " if result.error else
                                        "  [green]✓[/green] ") + nb.parent.name
                                       + (f"  {result.error}" if result.error else ""))
                progress.advance(task)
    analyst.close()
    reviewer.close()
    return [outcomes[a.notebook] for a in apps]


def report(console: Any, url: str, outcomes: list[Outcome], passwords: dict[str, str],
           data_dir: Path) -> None:
    from rich.table import Table

    apps = Table(title="Demo apps", show_lines=False)
    for col in ("app", "state", "page"):
        apps.add_column(col)
    for o in outcomes:
        apps.add_row(o.title or o.notebook.parent.name,
                     "[red]failed[/red]" if o.error else o.state,
                     o.error or o.url)
    console.print(apps)
    users = Table(title="Demo users (passwords are new at each run)")
    users.add_column("user")
    users.add_column("password")
    for name, password in passwords.items():
        users.add_row(name, password)
    console.print(users)
    console.print(f"data dir: {data_dir}")
    console.print(f"\n[bold]Gallery:[/bold] {url}/   (log in as one of the users above)")


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m nbapps.demo", description=__doc__)
    parser.add_argument("--data-dir", default=".demo-data", help="demo data dir")
    parser.add_argument("--gallery-dir", default=str(ROOT / "gallery"))
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="notebooks validated at once")
    parser.add_argument("--no-serve", action="store_true", help="stop after seeding")
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    data_dir = Path(args.data_dir).absolute()
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    apps = gallery_apps(Path(args.gallery_dir))
    if not apps:
        console.print(f"[red]no apps found in {args.gallery_dir}[/red]")
        return 1
    passwords, tokens = setup_users(db_url)
    port = args.port if port_free(args.ip, args.port) else 0
    server = BackgroundServer([f"--port={port}", f"--ip={args.ip}", f"--data-dir={data_dir}",
                               f"--db-url={db_url}", "--log-level=WARN"])
    url = server.start()
    try:
        outcomes = seed(url, tokens, apps, max(1, args.workers), console)
        report(console, url, outcomes, passwords, data_dir)
        if args.no_serve:
            return 0 if not any(o.error for o in outcomes) else 1
        console.print("serving; press Ctrl-C to stop")
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
