"""Validation reports as text (for people) and JSON (for tools).

Text: one line per finding, ``PATH:cell N [first line]  CODE severity: message`` followed by an
indented ``fix:`` line, then a summary line. Cells are counted from 1 everywhere, as JupyterLab
shows them: ``cell N`` in text, ``cell`` in JSON (where ``cell_index`` is the 0-based index, for
tools that jump to the cell). Colour comes from rich, only when asked for.

JSON: ``{"notebooks": [report...], "summary": {...}}``; its keys are stable (tools parse them).
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from ..validate import Report

_STYLE = {"error": "bold red", "warning": "yellow"}


def exit_code(reports: Sequence[Report]) -> int:
    """0 clean (warnings allowed), 1 error findings, 3 execution failure (the highest wins)."""
    return max((r.exit_code for r in reports), default=0)


def summary(reports: Sequence[Report], elapsed: float | None = None) -> dict[str, Any]:
    errors = sum(r.error_count for r in reports)
    warnings = sum(r.warning_count for r in reports)
    return {
        "notebooks": len(reports),
        "ok": sum(1 for r in reports if r.ok),
        "with_errors": sum(1 for r in reports if not r.ok),
        "errors": errors,
        "warnings": warnings,
        "exit_code": exit_code(reports),
        "duration": round(elapsed if elapsed is not None else sum(r.duration for r in reports),
                          3),
    }


def render_json(reports: Sequence[Report], elapsed: float | None = None) -> str:
    doc = {"notebooks": [r.to_dict() for r in reports], "summary": summary(reports, elapsed)}
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _finding_text(report: Report, finding: Any) -> Text:
    line = Text()
    line.append(report.path, style="bold")
    if finding.cell is not None:
        line.append(f":cell {finding.cell_number}", style="bold")
        if finding.cell_line:
            line.append(f" [{finding.cell_line}]", style="dim")
    severity = finding.severity.value
    line.append("  ")
    line.append(finding.code, style=_STYLE.get(severity, ""))
    line.append(f" {severity}: ", style=_STYLE.get(severity, ""))
    message_lines = (finding.message or "").splitlines() or [""]
    line.append(message_lines[0])
    for extra in message_lines[1:]:
        line.append("\n    " + extra)
    if finding.hint:
        line.append("\n    fix: ", style="cyan")
        line.append(finding.hint, style="dim")
    return line


def _report_text(report: Report) -> list[Text]:
    out: list[Text] = [_finding_text(report, f) for f in report.sorted_findings()]
    for note in report.notes:
        out.append(Text.assemble((report.path, "bold"), ("  note: ", "cyan"), note))
    runs = len(report.runs)
    failed = sum(1 for r in report.runs if not r.get("ok", True))
    ran = f"ran {_plural(runs, 'parameter set')}" if runs else "not run"
    if failed:
        ran += f", {failed} failed"
    if report.ok:
        status, style = "ok", "green"
        if report.warning_count:
            status += " with " + _plural(report.warning_count, "warning")
    else:
        status, style = _plural(report.error_count, "error"), "bold red"
        if report.warning_count:
            status += ", " + _plural(report.warning_count, "warning")
    out.append(Text.assemble((report.path, "bold"), "  ", (status, style),
                             f" ({ran}, {report.duration:.1f} s)"))
    return out


def render_text(reports: Sequence[Report], color: bool, elapsed: float | None = None) -> str:
    """Readable report for a terminal or a log; ANSI colour only when ``color``."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, soft_wrap=True,
                      highlight=False, emoji=False, width=200)
    for report in reports:
        for text in _report_text(report):
            console.print(text)
    info = summary(reports, elapsed)
    parts = [_plural(info["notebooks"], "notebook") + " checked"]
    if info["with_errors"]:
        parts.append(f"{info['with_errors']} with errors")
    parts.append(_plural(info["errors"], "error"))
    parts.append(_plural(info["warnings"], "warning"))
    line = Text(", ".join(parts) + f" in {info['duration']:.1f} s",
                style="bold red" if info["errors"] else "bold green")
    console.print(line)
    return buffer.getvalue()
