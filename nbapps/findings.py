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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: data.get(k) for k in (
            "code", "message", "cell", "cell_line", "severity", "hint", "path")})


def first_line(source: str | list[str], limit: int = 80) -> str:
    """The first non-blank line of a cell source, shortened to ``limit`` characters."""
    text = "".join(source) if isinstance(source, list) else source
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def cell_finding(code: str, message: str, nb: Any, index: int, **kw: Any) -> Finding:
    """A finding about cell ``index`` of notebook ``nb`` (an nbformat node)."""
    return Finding(code, message, cell=index, cell_line=first_line(nb.cells[index].source), **kw)
