"""A starting runner fills the gallery's memory of shared assets from the remembered list."""
from __future__ import annotations

import json

import httpx
import pytest

from nbapps.server.app_assets import AssetCache
from nbapps.server.asset_warmup import RememberedAssets, missing
from tests.test_runner_fixtures import Gallery, widget_app_notebook, write_bundle
from tests.test_runner_supervisor import wait_until

JS = "voila/static/voila.js"


def test_the_list_survives_a_restart_and_holds_only_shared_voila_files(tmp_path):
    path = tmp_path / "runtime" / "shared-assets.json"
    listed = RememberedAssets(path, limit=3)
    for key in (JS, "voila/labextensions/x/static/1.js?v=abc", JS,
                "voila/templates/nbapps/static/a.css", "voila/static/over-the-limit.js"):
        listed.note(key)  # no event loop here: saved at once
    again = RememberedAssets(path)
    assert again.listed() == [JS, "voila/labextensions/x/static/1.js?v=abc",
                              "voila/templates/nbapps/static/a.css"]
    # a damaged or edited file asks runners for nothing but Voilà's shared files
    path.write_text(json.dumps({"keys": ["voila/files/data.csv", "voila/static/../../x", 5,
                                         "api/kernels", JS]}))
    assert RememberedAssets(path).listed() == [JS]
    path.write_text("not json")
    assert RememberedAssets(path).listed() == []
    cache = AssetCache()
    cache.put(JS, [("Content-Type", "text/javascript")], b"1")
    assert missing(cache, RememberedAssets(path)) == []


@pytest.mark.kernel
def test_a_starting_runner_fills_the_asset_memory_before_the_first_page(tmp_path):
    bundle = write_bundle(tmp_path / "b", widget_app_notebook())
    path = tmp_path / "shared-assets.json"
    first = Gallery(tmp_path / "one", {"a": bundle}, remembered=RememberedAssets(path))
    try:
        first.start()
        first.ready("a", warm=False)
        js = httpx.get(first.url(f"/apps/a/{JS}"), timeout=60)
        assert js.status_code == 200 and js.content
        # saved within a second, for the next gallery process
        assert wait_until(lambda: path.exists() and JS in path.read_text(), timeout=10)
    finally:
        first.stop()
    second = Gallery(tmp_path / "two", {"a": bundle}, remembered=RememberedAssets(path))
    try:
        second.start()
        second.ready("a", warm=False)
        assert second.proxy_config is not None
        cache = second.proxy_config.assets
        assert wait_until(lambda: cache.has(JS), timeout=15)
        hits = cache.hits
        again = httpx.get(second.url(f"/apps/a/{JS}"), timeout=60)
        assert again.status_code == 200 and again.content == js.content
        assert cache.hits == hits + 1  # from memory: the page never waited on the runner
    finally:
        second.stop()
