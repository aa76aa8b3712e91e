"""Read an IPython traceback (an ``error`` output's ``traceback`` list) for NBA070's message.

An analyst needs two places from a traceback: the line of their cell that failed, and the last
frame (where the exception was raised, often inside a library: that names the call that was
wrong). IPython renders frames as ``Cell In[7], line 3, in f(d)`` or
``File /…/site-packages/pandas/core/frame.py:4102, in DataFrame.__getitem__(self, key)``,
followed by the source lines with an arrow (``---->``) on the executed one. Chained exceptions
repeat the whole block; the last block is the exception that reached the cell. A
``SyntaxError`` has no frames: one ``Cell In[7], line 2`` header, the line, a caret.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CELL = re.compile(r"^\s*Cell In\s*\[(\d+)\],\s*line (\d+)(?:,\s*in (.+))?\s*$")
_FILE = re.compile(r"^\s*File (.+?):(\d+)(?:,\s*in (.+))?\s*$")
_ARROW = re.compile(r"^\s*-*>\s*(\d+)\s?(.*)$")
_CHAIN = "Traceback (most recent call last)"
_LIBRARY_DIRS = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class Frame:
    """One frame: in a cell (``execution_count`` set) or in a file (``file`` set)."""

    line: int
    code: str = ""
    function: str = ""
    execution_count: int | None = None
    file: str = ""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def frames(traceback: Sequence[str]) -> list[Frame]:
    """The frames of the exception that reached the cell (outermost first)."""
    entries = [strip_ansi(str(e)) for e in traceback or []]
    starts = [i for i, e in enumerate(entries) if _CHAIN in e]
    if starts:
        entries = entries[starts[-1] + 1:]
    out: list[Frame] = []
    for entry in entries:
        lines = entry.splitlines()
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            continue
        head = lines[0]
        cell, file = _CELL.match(head), _FILE.match(head)
        if cell is None and file is None:
            continue
        match = cell or file
        assert match is not None
        line = int(match.group(2))
        code = ""
        for text in lines[1:]:
            arrow = _ARROW.match(text)
            if arrow:
                line, code = int(arrow.group(1)), arrow.group(2).strip()
                break
        else:  # a SyntaxError: the header, the offending line, a caret
            rest = [t.strip() for t in lines[1:] if t.strip() and set(t.strip()) != {"^"}]
            if rest and not rest[0].startswith(("SyntaxError", "IndentationError",
                                                "TabError")):
                code = rest[0]
        if "Could not get source" in code:
            code = ""
        function = (match.group(3) or "").strip()
        function = re.sub(r"\(.*\)$", "", function).strip()
        if cell is not None:
            out.append(Frame(line, code, function, execution_count=int(cell.group(1))))
        else:
            out.append(Frame(line, code, function, file=_short_path(file.group(1))))
    return out


def clean_evalue(ename: str, evalue: str) -> str:
    """The exception's text without the compiler's temporary file name that a
    ``SyntaxError`` carries (``incomplete input (1137177490.py, line 2)``)."""
    if ename in ("SyntaxError", "IndentationError", "TabError"):
        return re.sub(r"\s*\([^()]*\.py, line \d+\)$", "", evalue)
    return evalue


def _short_path(path: str) -> str:
    """``pandas/core/frame.py`` for a library file; the last two parts of other paths."""
    parts = path.replace("\\", "/").split("/")
    for marker in _LIBRARY_DIRS:
        if marker in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(marker):])
    return "/".join(parts[-2:]) if len(parts) > 2 else path


def _code(text: str, limit: int = 80) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(traceback: Sequence[str], cell_numbers: Mapping[int, int] | None = None) -> str:
    """``line 3: `f(df)`; last frame: pandas/core/indexes/base.py:3823, in Index.get_loc:
    `raise KeyError(key) from err``` (empty when the traceback names no frame).

    ``cell_numbers`` maps execution counts to the 1-based cell numbers shown to people, so a
    frame in a function defined in another cell reads ``cell 3, line 3, in f``.
    """
    found = frames(traceback)
    if not found:
        return ""
    first, last = found[0], found[-1]
    parts = []
    if first.execution_count is not None:
        parts.append(f"line {first.line}" + (f": `{_code(first.code)}`" if first.code else ""))
    if last is not first or first.execution_count is None:
        if last.execution_count is not None:
            number = (cell_numbers or {}).get(last.execution_count)
            where = (f"cell {number}, " if number is not None else "") + f"line {last.line}"
        else:
            where = f"{last.file}:{last.line}"
        if last.function and last.function != "<module>":
            where += f", in {last.function}"
        parts.append("last frame: " + where + (f": `{_code(last.code)}`" if last.code else ""))
    return "; ".join(parts)
