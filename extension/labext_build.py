"""Build function for hatch-jupyter-builder (see ``[tool.hatch.build.hooks.jupyter-builder]``).

``pip install -e .`` (and building a wheel) calls :func:`build`, which builds the JupyterLab
extension into ``nbapps/labextension`` only when that output is missing or older than one of its
inputs, and runs ``jlpm install`` only when ``node_modules`` is missing or older than
``package.json``/``yarn.lock``. So after the first install a rebuild needs no network (the
packages come from ``node_modules``, and ``.yarn/cache`` holds the archives).

It also fetches the review preview's widget renderer (``scripts/widget_embed.py``, what
``make widgets`` does) when it is missing: the folder is git-ignored, so a clone installed with
``pip install .`` (Binder's postBuild) would otherwise ship a gallery whose previews show widgets
as placeholders. A failed fetch (no network) is a warning, not a failed install.

Set ``HATCH_JUPYTER_BUILDER_SKIP_NPM=1`` to skip both (e.g. a wheel built from an sdist that
already holds the built extension and no Node.js).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

from hatch_jupyter_builder.utils import _get_log, is_stale, normalize_cmd, run

#: what the built extension depends on, relative to the extension folder
INPUTS = ("src", "style", "schema", "package.json", "tsconfig.json", "yarn.lock", ".yarnrc.yml")


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def needs_install(ext: Path) -> bool:
    state = ext / "node_modules" / ".yarn-state.yml"
    if not state.exists():
        return True
    return max(_mtime(ext / "package.json"), _mtime(ext / "yarn.lock")) > _mtime(state)


def needs_build(ext: Path, out: Path) -> bool:
    if not (out / "package.json").exists() or not (out / "static" / "style.js").exists():
        return True
    return any(is_stale(out, ext / name) for name in INPUTS if (ext / name).exists())


def ensure_widget_renderer(root: Path) -> bool:
    """Fetch the pinned widget renderer into the package when it is not there (True when it is
    there afterwards). ``root`` is the repository (the folder of ``scripts/``)."""
    log = _get_log()
    spec = importlib.util.spec_from_file_location("nbapps_widget_embed",
                                                  root / "scripts" / "widget_embed.py")
    if spec is None or spec.loader is None:
        return False
    embed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embed)
    target = root / "nbapps" / "server" / "static" / "widgets"
    if embed.installed(target):
        return True
    try:
        embed.fetch(target)
    # SystemExit: the script's own refusals (no npm, a digest that differs)
    except (OSError, SystemExit, ValueError, subprocess.SubprocessError) as exc:
        log.warning("nbapps: widget renderer not fetched (%s); review previews will show "
                    "widgets as placeholders until `make widgets` runs", exc)
        return False
    log.info("nbapps: widget renderer fetched into %s", target)
    return True


def build(
    target_name: str,
    version: str,
    path: str = "extension",
    build_dir: str = "nbapps/labextension",
    build_cmd: str = "build:prod",
    npm: str | list[str] = "jlpm",
    force: bool = False,
) -> None:
    log = _get_log()
    if os.environ.get("HATCH_JUPYTER_BUILDER_SKIP_NPM") == "1":
        log.info("nbapps: skipping the lab extension build (HATCH_JUPYTER_BUILDER_SKIP_NPM=1)")
        return
    ext, out = Path(path).resolve(), Path(build_dir).resolve()
    ensure_widget_renderer(ext.parent)
    if not force and not needs_build(ext, out):
        log.info("nbapps: lab extension in %s is up to date", build_dir)
        return
    cmd = normalize_cmd(npm if isinstance(npm, list) else [npm])
    start = time.monotonic()
    if needs_install(ext):
        log.info("nbapps: installing the lab extension's JavaScript dependencies")
        run([*cmd, "install"], cwd=str(ext))
        (ext / "node_modules" / ".yarn-state.yml").touch()  # mark node_modules as current
    log.info("nbapps: building the lab extension (%s %s)", target_name, version)
    run([*cmd, "run", build_cmd], cwd=str(ext))
    log.info("nbapps: lab extension built in %.0f s", time.monotonic() - start)
