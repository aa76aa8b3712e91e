"""Fetch the ipywidgets HTML manager's embed bundle into nbapps/server/static/widgets/.

The review preview renders the widget state saved by the gallery's run with
``@jupyter-widgets/html-manager``'s ``dist/embed.js`` (a self-contained build published by the
Jupyter widgets project on the npm registry), served by the gallery itself: no CDN. This script
asks npm for exactly one pinned version (``npm pack``), checks the archive against the pinned
integrity digest, and writes only the files the preview needs. It does nothing when the pinned
version is already there.

    python scripts/widget_embed.py          # or: make widgets
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@jupyter-widgets/html-manager"
#: html-manager 1.0.x renders ipywidgets 8 (and 7) state; bump with ipywidgets' own releases
VERSION = "1.0.15"
#: ``npm view @jupyter-widgets/html-manager@VERSION dist.integrity``
INTEGRITY = ("sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp"
             "47bCrJ3CQA==")
#: archive members copied (the fonts are left out: a sandboxed frame cannot load them anyway)
MEMBERS = {"package/dist/embed.js": "embed.js",
           "package/dist/embed.js.LICENSE.txt": "embed.js.LICENSE.txt",
           "package/package.json": "package.json"}

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "nbapps" / "server" / "static" / "widgets"
STAMP = "VERSION"


def installed(target: Path = TARGET) -> bool:
    stamp = target / STAMP
    return (target / "embed.js").is_file() and stamp.is_file() \
        and stamp.read_text("utf-8").strip() == f"{PACKAGE}@{VERSION}"


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def fetch(target: Path = TARGET) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to fetch the widget renderer (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="nbapps-widgets-") as tmp:
        out = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--json",
                              "--pack-destination", tmp],
                             cwd=tmp, check=True, capture_output=True, text=True).stdout
        name = json.loads(out)[0]["filename"]
        archive = Path(tmp) / name
        got = _integrity(archive)
        if got != INTEGRITY:
            raise SystemExit(f"{PACKAGE}@{VERSION}: integrity {got} differs from the pinned "
                             f"{INTEGRITY}; refusing to install it")
        staging = Path(tempfile.mkdtemp(prefix=".widgets-", dir=target.parent))
        staging.chmod(0o755)  # served files: readable like the rest of the package
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member, dest in MEMBERS.items():
                    src = tar.extractfile(member)
                    if src is None:
                        raise SystemExit(f"{member} missing from {name}")
                    (staging / dest).write_bytes(src.read())
            (staging / STAMP).write_text(f"{PACKAGE}@{VERSION}\n", "utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def main() -> int:
    if installed():
        return 0
    fetch()
    sys.stdout.write(f"widget renderer {PACKAGE}@{VERSION} installed in {TARGET}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
