"""A cold start serves its first viewer as soon as each pool has one kernel (real runners).

The viewer who starts a runner waits for one rendered page, not for the whole pool: the first
kernel of each pool starts at once (whatever ``max_concurrent_preheats``), the runner counts as
ready once every pool has a kernel, and the pools' other kernels start after the first ones
have pre-run, so they take no CPU from the page a viewer waits for.
"""
from __future__ import annotations

import time

import httpx
import pytest

from tests.test_runner_fixtures import Gallery, fast_settings, widget_app_notebook, write_bundle

pytestmark = pytest.mark.kernel

SLOW_CELL = "import time\ntime.sleep(2.0)"


def test_a_cold_runner_serves_once_each_pool_has_its_first_kernel(tmp_path):
    app = write_bundle(tmp_path / "a", widget_app_notebook(extra=[SLOW_CELL]))
    g = Gallery(tmp_path, {"a": app},
                runner=fast_settings(pool_size=2, custom_pool_size=1, max_concurrent_preheats=1))
    try:
        g.start()
        runner = g.ready("a", warm=False)
        pools = runner.read_status()["pools"]
        default, custom = pools["nbapps-default.ipynb"], pools["nbapps-custom.ipynb"]
        # ready while the first default kernel still runs the slow cell: the second has not
        # started, and the custom pool's first kernel did not wait for a preheat slot
        assert (default["started"], default["rendered"]) == (1, 0), pools
        assert custom["started"] == 1, pools
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            default = runner.read_status()["pools"]["nbapps-default.ipynb"]
            seen.append((default["started"], default["rendered"]))
            if default["rendered"] >= 1:
                break
            time.sleep(0.05)
        # the second default kernel waited for the first one's pre-run
        assert all(started <= 1 for started, rendered in seen if rendered == 0), seen
        page = httpx.get(g.url("/apps/a/"), timeout=60)
        assert page.status_code == 200 and "RESULT 3 x 0.5 9" in page.text
        g.wait_warm("a", timeout=60)
        full = runner.read_status()["pools"]
        assert full["nbapps-default.ipynb"]["rendered"] == 2, full
    finally:
        g.stop()
