"""Debian's Chromium, driven by Playwright: the one launch every browser test shares.

``playwright install`` cannot download browsers on the CI machines; ``make test`` installs
``/usr/bin/chromium`` (scripts/install-system-deps.sh) and the tests drive that binary.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@contextmanager
def launched_chromium(**launch_args: Any) -> Iterator[Any]:
    """A headless Chromium browser (Playwright ``Browser``), closed on exit.

    Without the binary the test skips on a workstation and fails under CI (``CI`` set), where
    ``make test`` must have installed it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is not installed (make test installs Debian's chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     **launch_args)
        try:
            yield browser
        finally:
            browser.close()
