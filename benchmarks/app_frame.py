"""What a person waits for in Chromium: the app frame, warm and cold, against a baseline.

    .venv/bin/python benchmarks/app_frame.py [--loads 5]

Not a test: it prints figures (DESIGN.md targets: a warm app's first widget output <= 500 ms
after navigation, a cold one <= 3 s) measured side by side in one run, on this machine (which
may be shared: the load average is printed at the start and the end). With the loan calculator
approved in a gallery serving apps (Debian's Chromium through Playwright):

- **cold**: the first open of the app (the runner starts), navigation to the frame until the
  first widget output (the what-if table) shows in the app's iframe;
- **frame**: the same, warm runner (pools refilled between loads), the way viewers open apps
  now: the gallery's frame with the app sandboxed in its iframe (opaque origin: no HTTP cache);
- **baseline**: the same app page opened by itself at its ticket URL *without* the sandbox (the
  CSP is switched in this process only), i.e. what the proxy served before app isolation,
  with the browser's cache at work.

Times are taken in the page, not by Playwright: a script added to every document marks the
moment the output appears (a MutationObserver), and the figure is that mark minus the top
document's navigation start. Playwright's ``wait_for`` polls with a growing interval (up to
1 s), which added 0-550 ms to each figure before (a warm frame of ~0.55 s read as ~1.1 s).
"""
from __future__ import annotations

import argparse
import json
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
from tests.test_app_browser import _loan_gallery, _login  # noqa: E402

OUTPUT = ".widget-output table"
# Marks, in every document, the epoch milliseconds at which OUTPUT first appears.
MARK_OUTPUT = """
(() => {
  const mark = () => {
    if (!window.__nbappsSeen && document.querySelector(OUTPUT)) {
      window.__nbappsSeen = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(mark).observe(document, {subtree: true, childList: true});
})();
""".replace("OUTPUT", json.dumps(OUTPUT))


def seconds_to_output(page, frame_selector: str | None) -> float:
    """Seconds from the top document's navigation start to OUTPUT, read from the page's mark."""
    if frame_selector:
        page.frame_locator(frame_selector).locator(OUTPUT).first.wait_for(timeout=600_000)
        frame = page.locator(frame_selector).element_handle().content_frame()
    else:
        page.locator(OUTPUT).first.wait_for(timeout=600_000)
        frame = page.main_frame
    seen = frame.evaluate("window.__nbappsSeen")
    return (seen - page.evaluate("performance.timeOrigin")) / 1000


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="warm loads of each kind")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"load average at start: {load()}", flush=True)
    sandboxed = isolation.APP_PAGE_CSP
    warm: dict[str, list[float]] = {"frame": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-frame-") as tmp, \
            _loan_gallery(Path(tmp)) as (g, slug), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(MARK_OUTPUT)
        page = context.new_page()
        _login(page, g, "vic")
        page.goto(f"{g.url}/app/{slug}/open", wait_until="commit")
        cold = seconds_to_output(page, "#app-view")
        src = page.get_attribute("#app-view", "src")
        for _ in range(args.loads):
            for kind in warm:
                time.sleep(3)  # the pool refills (fill_delay) before the next viewer
                isolation.APP_PAGE_CSP = sandboxed if kind == "frame" else "frame-ancestors 'self'"
                if kind == "frame":
                    page.goto(f"{g.url}/app/{slug}/open", wait_until="commit")
                    warm[kind].append(seconds_to_output(page, "#app-view"))
                else:
                    page.goto(f"{g.url}{src}", wait_until="commit")
                    warm[kind].append(seconds_to_output(page, None))
        isolation.APP_PAGE_CSP = sandboxed
        browser.close()
    print(f"cold start, frame to first widget output: {cold * 1000:.0f} ms (target 3000 ms)")
    for kind, values in warm.items():
        print(f"warm {kind:8s}: median {statistics.median(values) * 1000:.0f} ms, "
              f"min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f} "
              f"({len(values)} loads)")
    ratio = statistics.median(warm["frame"]) / statistics.median(warm["baseline"])
    print(f"frame / baseline: {ratio:.2f}x (warm target: frame <= 500 ms)")
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
