"""nbapps: turn Jupyter notebooks into governed micro apps."""
from __future__ import annotations

from typing import Any

from .record import record  # nbapps.record(name, value) in notebooks


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed metadata when first asked for: every confined
    program, launcher and kernel imports this package, and ``importlib.metadata`` alone costs
    each of them ~25 ms of CPU."""
    if name != "__version__":
        raise AttributeError(f"module 'nbapps' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:  # one version for the package and the lab extension: extension/package.json
        found = version("nbapps")
    except PackageNotFoundError:  # running from a source tree that was never installed
        found = "0+unknown"
    globals()["__version__"] = found
    return found


__all__ = ["__version__", "record"]
