"""The gallery's log set-up (nbapps.server.logs): a peer's reset after its reader stopped
waiting is not logged as an error; every other tornado error still is."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
from nbapps.server.logs import configure_logging
configure_logging("text", sys.argv[1])
configure_logging("text", sys.argv[1])  # twice, as a restarted app would: one filter
app = logging.getLogger("tornado.application")
def fail(exc):
    try:
        raise exc
    except BaseException:
        return sys.exc_info()
app.error("Exception after Future was cancelled", exc_info=fail(ConnectionResetError(104, "reset")))
app.error("Exception after Future was cancelled", exc_info=fail(ValueError("a real bug")))
app.error("Uncaught exception GET /x", exc_info=fail(ConnectionResetError(104, "reset")))
print(len(app.filters), file=sys.stderr)
"""


def logged(level: str) -> str:
    out = subprocess.run([sys.executable, "-c", SCRIPT, level], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_a_peer_reset_after_the_reader_gave_up_is_kept_for_debug_only():
    text = logged("INFO")
    assert "ConnectionResetError" not in text.split("Uncaught exception GET /x")[0], text
    assert "ValueError: a real bug" in text  # the same message with a real error is kept
    assert "Uncaught exception GET /x" in text  # and other errors with a reset, too
    assert text.strip().endswith("1")
    debug = logged("DEBUG")
    assert debug.count("Exception after Future was cancelled") == 2
