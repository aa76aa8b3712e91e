"""The queue in front of a full app and the per-viewer bound, as data structures (the real
gallery and Chromium are in tests/test_app_queue.py)."""
from __future__ import annotations

from nbapps.runner.settings import RuntimeConfiguration
from nbapps.runner.viewer_pages import ViewerPages
from nbapps.runner.waiting_room import WaitingRoom


def test_places_advance_in_arrival_order_and_a_leaver_gives_up_theirs():
    room = WaitingRoom(patience=10)
    assert [room.place(k, now=0) for k in ("a", "b", "c")] == [1, 2, 3]
    assert room.place("b", now=1) == 2  # asking again keeps the place
    room.leave("a")  # a got in
    assert room.place("b", now=2) == 1 and room.place("c", now=2) == 2
    room.place("b", now=9)
    room.prune(now=12.5)  # c has not asked for 10.5 s: the page was closed
    assert "c" not in room and len(room) == 1
    assert room.place("d", now=13) == 2  # newcomers queue behind b, never before


def test_viewer_pages_follow_their_kernels():
    pages = ViewerPages(unconnected_timeout=45)
    first = pages.admit("user:1", now=0)
    pages.admit("user:1", now=0)
    pages.admit("user:2", now=0)
    assert pages.count("user:1", now=1) == 2 and pages.count("user:2", now=1) == 1
    pages.bind(first, "k1")
    socket = pages.connect("user:1", "k1")
    pages.end_kernel("k1")  # the unload beacon shut the kernel down
    assert pages.count("user:1", now=2) == 1
    pages.disconnect(socket)  # its socket then closes: nothing counted twice
    assert pages.count("user:1", now=2) == 1
    # a page that never connects counts until the runner culls its kernel
    assert pages.count("user:1", now=46) == 0 and pages.count("user:2", now=46) == 0
    held = pages.connect("user:3")  # a connected page counts however old
    assert pages.count("user:3", now=10_000) == 1
    pages.disconnect(held)
    assert pages.count("user:3", now=10_000) == 0


def test_bounds_are_runtime_settings_with_defaults():
    settings = RuntimeConfiguration().supervisor_settings("/tmp/nbapps-runtime")
    assert settings.max_kernels_per_viewer == 3
    assert settings.queue_patience == 10.0
    config = RuntimeConfiguration()
    config.max_kernels_per_viewer = 1
    assert config.supervisor_settings("/tmp/x").max_kernels_per_viewer == 1
