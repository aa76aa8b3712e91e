"""Findings: what validation says about a notebook, each with a stable code."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .codes import CODES, Severity


@dataclass(frozen=True)
class Finding:
    """One problem found in a notebook.

    ``cell`` is the 0-based cell index (``None`` for whole-notebook findings) and ``cell_line`` the
    first non-empty source line of that cell, so a reader can find it without counting cells.
    ``severity`` and ``hint`` default to the code's entry in the code table.

    People see one numbering only: cells counted from 1, as JupyterLab shows them
    (:attr:`cell_number`), in text, in messages, in the gallery and in JSON, where ``cell`` is
    that number and ``cell_index`` the 0-based index for tools (see :meth:`to_dict`).
    """

    code: str
    message: str
    cell: int | None = None
    cell_line: str | None = None
    severity: Severity = field(default=None)  # type: ignore[assignment]
    hint: str = ""
    path: str | None = None

    def __post_init__(self) -> None:
        known = CODES.get(self.code)
        if self.severity is None:
            object.__setattr__(self, "severity", known.severity if known else Severity.ERROR)
        elif not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity(self.severity))
        if not self.hint and known:
            object.__setattr__(self, "hint", known.fix)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def cell_number(self) -> int | None:
        """The cell's number as JupyterLab shows it (1-based), or None."""
        return None if self.cell is None else self.cell + 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``cell`` is the 1-based number people see, ``cell_index`` the 0-based
        index (for tools that jump to the cell)."""
        data = asdict(self)
        data["severity"] = self.severity.value
        data["cell"] = self.cell_number
        data["cell_index"] = self.cell
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict` (``cell_index`` wins; a dict without it is taken as an
        older one whose ``cell`` was the 0-based index)."""
        values = {k: data.get(k) for k in ("code", "message", "cell_line", "severity", "hint",
                                           "path")}
        index = data.get("cell_index", data.get("cell"))
        return cls(cell=index if isinstance(index, int) else None, **values)


def first_line(source: str | list[str], limit: int = 80) -> str:
    """The first non-blank line of a cell source, shortened to ``limit`` characters."""
    text = "".join(source) if isinstance(source, list) else source
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def cell_finding(code: str, message: str, nb: Any, index: int, **kw: Any) -> Finding:
    """A finding about cell ``index`` (0-based) of notebook ``nb`` (an nbformat node)."""
    return Finding(code, message, cell=index, cell_line=first_line(nb.cells[index].source), **kw)


def cell_label(index: int, source: str | list[str] = "", limit: int = 60) -> str:
    """``cell 3 (`first line`)`` for the cell at 0-based ``index``: the wording messages use."""
    line = first_line(source, limit)
    return f"cell {index + 1} (`{line}`)" if line else f"cell {index + 1}"
