"""App first render with the local runner backend vs runners as JupyterHub named servers
(seeing the gallery's folder, or fetching it over HTTP as on Kubernetes).

    .venv/bin/python benchmarks/hub_runner.py [--cold 3] [--warm 5]

Not a test: it prints figures measured side by side in one run on this machine (which may be
shared: the load average is printed at the start and the end). For each backend, a gallery
serving the loan calculator (the Hub one with a real JupyterHub on loopback, as in
tests/test_hub_runner.py), Debian's Chromium through Playwright:

- **cold**: the runner is stopped (``Supervisor.retire``), then the app frame is opened and
  timed until the first widget output shows: runner start (a Hub spawn for the Hub backend),
  pool preheat and the page;
- **warm**: the same with the runner serving (pools refilled between loads).

Times are read in the page (:mod:`tests.page_timing`), from navigation start to the output.

The galleries run at once and their opens alternate, so all see the same machine load.

The ratio Hub / local of the medians is each Hub backend's cost.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.hub import TESTER_SCOPES, running_hub  # noqa: E402
from tests.page_timing import mark_first, seconds_to  # noqa: E402
from tests.pg import free_port  # noqa: E402
from tests.test_app_browser import LOAN, _approve_api, _login, _submit  # noqa: E402

OUTPUT = ".widget-output table"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@contextmanager
def gallery(base: Path, backend: str) -> Iterator[tuple[Any, str, Any]]:
    """(Gallery, slug, supervisor) with the loan calculator live, on the chosen backend:
    local, jupyterhub (the server sees the gallery's folder) or jupyterhub-fetch (it fetches
    its folder and reports over HTTP, in a mount namespace that hides the gallery's)."""
    import nbformat

    from tests.server_harness import Gallery, ThreadServer, build_archive, new_data_dir
    from tests.test_hub_runner import ACCOUNT, SERVICE, hub_config

    with ExitStack() as stack:
        args: list[str] = []
        port = free_port()
        runtime = base / "data" / "runtime"
        if backend != "local":
            token = secrets.token_hex(32)
            h = stack.enter_context(running_hub(
                base / "hub", free_port(),
                hub_config(runtime, runtime, f"http://127.0.0.1:{port}"),
                services=[{"name": SERVICE, "api_token": token}],
                roles=[{"name": "runners", "services": [SERVICE],
                        "scopes": [f"servers!user={ACCOUNT}"]}],
                tester_scopes=[*TESTER_SCOPES, "admin:servers"]))
            assert h.call("POST", f"users/{ACCOUNT}").status_code == 201
            args = ["--RuntimeConfiguration.backend=jupyterhub",
                    f"--RuntimeConfiguration.hub_api_url={h.api}",
                    f"--RuntimeConfiguration.hub_api_token={token}",
                    f"--RuntimeConfiguration.hub_account={ACCOUNT}"]
            if backend == "jupyterhub-fetch":
                args.append("--RuntimeConfiguration.hub_runner_files=fetch")
        data_dir, db_url, users = new_data_dir(base)
        server = ThreadServer(data_dir, db_url, args)
        server.server.port = port  # the Hub hook's gallery_url
        server.server.serve_apps = True
        server.server.app_pool_size = 1
        server.server.app_custom_pool_size = 1
        contexts: list[Any] = []
        build = server.server.build_context

        def capture() -> Any:
            contexts.append(build())
            return contexts[-1]

        server.server.build_context = capture
        try:
            g = Gallery(url=server.start().rstrip("/"), data_dir=data_dir, db_url=db_url,
                        users=users, server=server)
            sub = _submit(g, build_archive(base / "loan", nbformat.read(LOAN, as_version=4)))
            _approve_api(g, sub["id"])
            yield g, sub["slug"], contexts[0].runtime
        finally:
            server.stop()


def measure(g: Any, slug: str, supervisor: Any, page: Any, kind: str) -> float:
    """One open of the app frame until the first widget output (seconds)."""
    if kind == "cold":
        future = asyncio.run_coroutine_threadsafe(supervisor.retire(slug), g.server.server.loop)
        future.result(120)
    page.goto(f"{g.url}/app/{slug}/open", wait_until="commit")
    return seconds_to(page, OUTPUT, "#app-view")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=3, help="cold opens per backend")
    parser.add_argument("--warm", type=int, default=5, help="warm opens per backend")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"load average at start: {load()}", flush=True)
    backends = ("local", "jupyterhub", "jupyterhub-fetch")
    results: dict[str, dict[str, list[float]]] = {b: {"cold": [], "warm": []} for b in backends}
    with sync_playwright() as pw, ExitStack() as stack:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        served = {}
        for backend in backends:  # all at once: the opens alternate, under the same load
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix=f"nbapps-bench-{backend}-"))
            g, slug, sup = stack.enter_context(gallery(Path(tmp), backend))
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            mark_first(context, OUTPUT)
            page = context.new_page()
            _login(page, g, "vic")
            served[backend] = (g, slug, sup, page)
        print(f"load average with the galleries up: {load()}", flush=True)
        for kind, n in (("cold", args.cold), ("warm", args.warm)):
            for _ in range(n):
                for backend in backends:
                    if kind == "warm":
                        time.sleep(3)  # the pool refills (fill_delay) before the next viewer
                    results[backend][kind].append(measure(*served[backend], kind))
    for backend, kinds in results.items():
        for kind, values in kinds.items():
            print(f"{backend:10s} {kind}: median {statistics.median(values) * 1000:.0f} ms, "
                  f"min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f} "
                  f"({len(values)} opens)")
    for hub in backends[1:]:
        for kind in ("cold", "warm"):
            ratio = (statistics.median(results[hub][kind])
                     / statistics.median(results["local"][kind]))
            print(f"{hub} / local, {kind}: {ratio:.2f}x")
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
