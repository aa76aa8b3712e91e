"""Argument types and run defaults shared by the ``validate``, ``run`` and ``bundle`` commands."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

#: seconds a whole run / one cell may take: ``ValidationSettings``' defaults (not imported from
#: there: the CLI parser must not import nbformat to start)
DEFAULT_TIMEOUT = 600.0
DEFAULT_CELL_TIMEOUT = 120.0


def positive(kind: type, noun: str = "a number") -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, refused unless above 0."""
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
        return value

    convert.__name__ = kind.__name__
    return convert


seconds = positive(float, "a number of seconds")
