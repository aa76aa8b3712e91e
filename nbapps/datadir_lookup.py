"""Which data dir a command uses, and why: one rule for ``nbapps serve``, ``nbapps user`` and
the demo, so that every command run in the same place finds the same catalog.

First found wins:

1. ``--data-dir`` on the command line;
2. ``$NBAPPS_DATA_DIR``;
3. ``c.NbappsServer.data_dir`` in a config file ``jupyter_nbapps_config.py`` (or ``.json``)
   in the current folder or on the Jupyter config path (``jupyter --paths``): the files
   ``nbapps serve`` reads (``python -m nbapps.demo`` writes one beside its data dir);
4. the default: platformdirs' user data dir (e.g. ``~/.local/share/nbapps``).

:class:`DataDirChoice` keeps the source, so a command that finds no catalog or no user can
say where it looked (``/srv/x (from $NBAPPS_DATA_DIR)``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .datadir import ENV_DATA_DIR, resolve_data_dir

log = logging.getLogger("nbapps.datadir")

CONFIG_BASENAME = "jupyter_nbapps_config"


@dataclass(frozen=True)
class DataDirChoice:
    """A data dir and where the choice came from (``--data-dir``, ``$NBAPPS_DATA_DIR``,
    ``config file <path>`` or ``default``)."""

    path: Path
    source: str

    def describe(self) -> str:
        return f"{self.path} (from {self.source})"

    @property
    def hint(self) -> str:
        return ("choose another with --data-dir, $NBAPPS_DATA_DIR or c.NbappsServer.data_dir "
                "in jupyter_nbapps_config.py")


def config_paths() -> list[str]:
    """The folders ``nbapps serve`` reads config files from: the current folder first, then
    the Jupyter config path."""
    try:
        from jupyter_core.paths import jupyter_config_path

        paths = jupyter_config_path()
    except ImportError:  # pragma: no cover - jupyter_core comes with nbformat
        paths = []
    return [os.getcwd(), *paths]


def configured_data_dir(paths: Sequence[str] | None = None) -> tuple[str, Path] | None:
    """``c.NbappsServer.data_dir`` from the config files and the file that set it, or None."""
    found = configured_setting("data_dir", paths)
    if found and isinstance(found[0], str) and found[0]:
        return found[0], found[1]
    return None


def configured_setting(name: str, paths: Sequence[str] | None = None
                       ) -> tuple[Any, Path] | None:
    """``c.NbappsServer.<name>`` from the config files and the file that set it, or None.

    Files are read with traitlets' loaders, in the order the server applies them (the Jupyter
    config path from the lowest priority, the current folder last), so the value is the one
    ``nbapps serve`` would get. Empty values (``""``, ``None``) count as not set.
    """
    from traitlets.config.loader import (
        ConfigFileNotFound,
        JSONFileConfigLoader,
        PyFileConfigLoader,
    )

    found: tuple[Any, Path] | None = None
    for folder in reversed(list(paths if paths is not None else config_paths())):
        for suffix, loader_class in ((".py", PyFileConfigLoader), (".json", JSONFileConfigLoader)):
            path = Path(folder) / f"{CONFIG_BASENAME}{suffix}"
            if not path.is_file():
                continue
            try:
                config = loader_class(path.name, path=str(path.parent), log=log).load_config()
            except ConfigFileNotFound:
                continue
            except Exception as exc:  # noqa: BLE001 - the server reports a broken file itself
                log.warning("config file %s not read: %s", path, exc)
                continue
            section = config.get("NbappsServer") or {}
            value = section.get(name) if hasattr(section, "get") else None
            if value is not None and value != "" and not _is_lazy(value):
                found = (value, path)
    return found


def _is_lazy(value: Any) -> bool:
    """traitlets' placeholder for a config key that was read but never assigned."""
    from traitlets.config.loader import Config, LazyConfigValue

    return isinstance(value, (Config, LazyConfigValue))


def locate_data_dir(flag: str | os.PathLike[str] | None = None, *,
                    config: tuple[str, str] | None | bool = True) -> DataDirChoice:
    """The data dir to use (see the module docstring for the order).

    ``config``: True reads the config files; a ``(value, where)`` pair or None is what the
    caller already read (the server has loaded its config files itself). A relative path is
    taken from the current folder, as the server always did.
    """
    if flag:
        return DataDirChoice(resolve_data_dir(flag), "--data-dir")
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return DataDirChoice(resolve_data_dir(env), f"${ENV_DATA_DIR}")
    if config is True:
        found = configured_data_dir()
        config = (found[0], f"config file {found[1]}") if found else None
    if config:
        value, where = config
        return DataDirChoice(resolve_data_dir(value), where)
    return DataDirChoice(resolve_data_dir(None), "default")
