"""nbapps: turn Jupyter notebooks into governed micro apps."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:  # one version for the package and the lab extension: extension/package.json
    __version__ = version("nbapps")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from .record import record  # noqa: E402 - nbapps.record(name, value) in notebooks

__all__ = ["__version__", "record"]
