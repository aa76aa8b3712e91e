"""Times read inside Chromium's documents (benchmarks that open app pages use it).

Playwright's ``wait_for`` polls the page with a growing interval (up to 1 s), so the wall time
around it overstates when something appeared by 0-550 ms (measured on the app frame: a warm
load of ~0.55 s read as ~1.1 s). Instead, :data:`MARK_SCRIPT` (added to a browser context with
:func:`mark_first`) records, in every document, the epoch time at which a selector first matches
(a MutationObserver), and :func:`seconds_to` reads it relative to the top document's navigation
start.
"""
from __future__ import annotations

import json
from typing import Any

#: records ``window.__nbappsSeen`` (epoch ms) when SELECTOR first matches in the document
MARK_SCRIPT = """
(() => {
  const mark = () => {
    if (!window.__nbappsSeen && document.querySelector(SELECTOR)) {
      window.__nbappsSeen = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(mark).observe(document, {subtree: true, childList: true});
})();
"""


def mark_first(context: Any, selector: str) -> None:
    """Mark the first appearance of ``selector`` in every document of a Playwright context."""
    context.add_init_script(MARK_SCRIPT.replace("SELECTOR", json.dumps(selector)))


def seconds_to(page: Any, selector: str, frame_selector: str | None = None,
               timeout_ms: float = 600_000) -> float:
    """Seconds from ``page``'s navigation start until ``selector`` appeared, in the page or in
    the iframe ``frame_selector`` (its context must have :func:`mark_first` for ``selector``)."""
    if frame_selector:
        page.frame_locator(frame_selector).locator(selector).first.wait_for(timeout=timeout_ms)
        frame = page.locator(frame_selector).element_handle().content_frame()
    else:
        page.locator(selector).first.wait_for(timeout=timeout_ms)
        frame = page.main_frame
    seen = frame.evaluate("window.__nbappsSeen")
    return (seen - page.evaluate("performance.timeOrigin")) / 1000
