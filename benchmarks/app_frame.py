"""What a person waits for in Chromium: the app frame, warm and cold, against a baseline.

    .venv/bin/python benchmarks/app_frame.py [--loads 5]

Not a test: it prints figures (DESIGN.md targets: a warm app's first widget output <= 500 ms
after navigation, a cold one <= 3 s) measured side by side in one run, on this machine (which
may be shared: the load average is printed at the start and the end). With the loan calculator
approved in a gallery serving apps (Debian's Chromium through Playwright):

- **cold**: the first open of the app (the runner starts; the default pool sizes), navigation
  to the frame until the first widget output (the what-if table) shows in the app's iframe;
- **frame**: the same, warm runner (pools refilled between loads), the way a person on a laptop
  opens apps by default: the gallery at ``localhost``, the app on its own origin
  (``<slug>.localhost``, :mod:`nbapps.server.app_origins`) in the gallery's frame;
- **sandboxed**: the same frame at ``127.0.0.1`` (any host name but localhost, or
  ``app_subdomain_host = ""``): the app sandboxed on the gallery's origin (opaque origin: no
  HTTP cache);
- **baseline**: the same app page opened by itself at its ticket URL *without* the sandbox (the
  CSP is switched in this process only), i.e. what the proxy served before app isolation,
  with the browser's cache at work.

Times are taken in the page (:mod:`tests.page_timing`), not around Playwright's polling waits.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nbapps.server.app_isolation as isolation  # noqa: E402
from tests.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.page_timing import mark_first, seconds_to  # noqa: E402
from tests.server_harness import Gallery  # noqa: E402
from tests.test_app_browser import _loan_gallery, _login  # noqa: E402

OUTPUT = ".widget-output table"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stop_runner(g: Gallery, slug: str) -> None:
    """Stop the app's runners (as an unpublish would) so that the next open starts one."""
    server = g.server.server
    runtime = server.live_sync.ctx.runtime
    asyncio.run_coroutine_threadsafe(runtime.retire(slug), server.loop).result(60)
    time.sleep(2)  # the stopped runner's processes are gone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="warm loads of each kind")
    parser.add_argument("--colds", type=int, default=3,
                        help="cold starts (the app's runner is stopped before each)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"load average at start: {load()}; default pool sizes", flush=True)
    sandboxed = isolation.APP_PAGE_CSP
    warm: dict[str, list[float]] = {"frame": [], "sandboxed": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-frame-") as tmp, \
            _loan_gallery(Path(tmp), small_pools=False) as (g, slug), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        mark_first(context, OUTPUT)
        page = context.new_page()
        # the default a person gets on a laptop: the gallery at localhost, each app on its own
        # origin (<slug>.localhost); at 127.0.0.1 the same gallery keeps the sandbox
        local = dataclasses.replace(g, url=g.url.replace("127.0.0.1", "localhost", 1))
        _login(page, g, "vic")
        _login(page, local, "vic")
        colds = []
        for n in range(args.colds):
            if n:
                stop_runner(g, slug)
            page.goto(f"{local.url}/app/{slug}/open", wait_until="commit")
            colds.append(seconds_to(page, OUTPUT, "#app-view"))
        page.goto(f"{g.url}/app/{slug}/open", wait_until="commit")
        src = page.get_attribute("#app-view", "src")
        page.close()
        # one tab per kind, as a person reopening an app would have (a tab that switches between
        # localhost and 127.0.0.1 gets a new renderer process at each switch, ~0.3 s more), each
        # signed in as another account (one account holds at most 3 kernels of an app)
        tabs = {}
        for kind, who in zip(warm, ("vic", "ana", "alf"), strict=True):
            tab = browser.new_context(viewport={"width": 1280, "height": 800})
            mark_first(tab, OUTPUT)
            tabs[kind] = tab.new_page()
            _login(tabs[kind], local if kind == "frame" else g, who)
        for _ in range(args.loads):
            for kind, tab in tabs.items():
                time.sleep(3)  # the pool refills (fill_delay) before the next viewer
                isolation.APP_PAGE_CSP = sandboxed if kind != "baseline" \
                    else "frame-ancestors 'self'"
                if kind == "baseline":
                    tab.goto(f"{g.url}{src}", wait_until="commit")
                    warm[kind].append(seconds_to(tab, OUTPUT))
                else:
                    url = local.url if kind == "frame" else g.url
                    tab.goto(f"{url}/app/{slug}/open", wait_until="commit")
                    warm[kind].append(seconds_to(tab, OUTPUT, "#app-view"))
        isolation.APP_PAGE_CSP = sandboxed
        browser.close()
    print(f"cold start, frame to first widget output: median {statistics.median(colds) * 1000:.0f}"
          f" ms, max {max(colds) * 1000:.0f} ({len(colds)} starts; target 3000 ms); each: "
          + ", ".join(f"{c * 1000:.0f}" for c in colds)
          + " ms (the first also fills the gallery's memory of Voilà's scripts)")
    for kind, values in warm.items():
        print(f"warm {kind:8s}: median {statistics.median(values) * 1000:.0f} ms, "
              f"min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f} "
              f"({len(values)} loads)")
    ratio = statistics.median(warm["frame"]) / statistics.median(warm["baseline"])
    print(f"frame / baseline: {ratio:.2f}x (warm target: frame <= 500 ms)")
    print("frame: the app on its own origin (the default at localhost); sandboxed: the app on "
          "the gallery's origin (any other host name, or app_subdomain_host = '')")
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
