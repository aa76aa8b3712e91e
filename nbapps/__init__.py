"""nbapps: turn Jupyter notebooks into governed micro apps."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
