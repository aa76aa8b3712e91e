"""One-time work of common libraries done in a kernel template, before kernels are forked.

An import is not all a library does once per process: IPython compiles the tokenizer's patterns
the first time it reads a cell; matplotlib finds its fonts, lays out text and sets up its PNG
writer the first time a figure is drawn (the font files themselves are opened again in each
kernel: matplotlib empties that cache in a forked child); pandas builds its formatters the first
time a table is shown. In every forked kernel that is CPU paid again for each new viewer: 2 ms of
every kernel, and 15 ms of a pandas + matplotlib kernel's ~100 ms of execution here (a warmed
parent's children run the same cells in 82 ms instead of 98 ms).

What runs here touches no global state an app could see: no pyplot figure (figure numbers stay
as in a new process), no random generator, no unit converters registered by pandas' plotting,
no option changed (a test compares them before and after). It runs only for libraries the
template has already imported (the app's own leading imports), and any failure is reported and
ignored: kernels then do the work themselves.
"""
from __future__ import annotations

import io
import sys
from collections.abc import Callable


def _ipython_cells() -> None:
    """IPython turns each cell into Python with the standard library's tokenizer, whose large
    regular expression is compiled at its first use in a process (2 ms of every kernel)."""
    from IPython.core.inputtransformer2 import TransformerManager

    TransformerManager().transform_cell("%matplotlib inline\nimport os\nx = 1  # a number\n"
                                        "print(f'{x}', os.sep)\n")


def _matplotlib() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, 1, 0], label="line")
    ax.set_title("title")
    ax.set_xlabel("x")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")


def _pandas() -> None:
    import pandas as pd

    frame = pd.DataFrame({"x": range(20), "y": [float(i) / 3 for i in range(20)],
                          "name": [f"n{i}" for i in range(20)]})
    frame.describe()._repr_html_()
    frame._repr_html_()
    repr(frame)


#: module -> its warm-up, run only when the template imported that module: matplotlib's only
#: with pyplot, which imports the axes and with them matplotlib's own unit converters (date,
#: category), so drawing registers nothing a kernel importing pyplot would not have
WARMUPS: dict[str, Callable[[], None]] = {
    "IPython.core.inputtransformer2": _ipython_cells, "matplotlib.pyplot": _matplotlib,
    "pandas": _pandas,
}


def warm_libraries() -> tuple[list[str], list[str]]:
    """Run the warm-ups of the imported libraries; the names warmed and the failures."""
    warmed, failed = [], []
    for name, warm in WARMUPS.items():
        if name not in sys.modules:
            continue
        try:
            warm()
            warmed.append(name)
        except Exception as exc:  # noqa: BLE001 - kernels then do it themselves
            failed.append(f"warm-up of {name}: {type(exc).__name__}: {exc}")
    return warmed, failed


__all__ = ["WARMUPS", "warm_libraries"]
