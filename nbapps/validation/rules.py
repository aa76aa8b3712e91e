"""The static rules of ``nbapps validate``: what can be said about a notebook without running it.

Each rule takes an :class:`~nbapps.notebook.AppNotebook` and returns findings. They never raise
for bad notebook content (a cell that is not Python is simply skipped by the rules that parse
code; running it will report it).
"""
from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..findings import Finding, cell_finding
from ..kernelspecs import installed_kernels, resolve_kernel_name
from ..notebook import INJECTED_TAG, AppNotebook
from ..secrets_scan import scan_notebook

log = logging.getLogger("nbapps.validate")

#: When outputs exceed the size limit, only the start of each output (this many characters) is
#: scanned for secrets: NBA060 already asks to clear them, and scanning 20 MB takes a minute.
PARTIAL_SCAN_CHARS = 64 * 1024

# -- kernel ---------------------------------------------------------------------------------------


def kernel_findings(app: AppNotebook, override: str | None = None) -> list[Finding]:
    """NBA010 (no kernelspec) and NBA011 (no installed kernel runs it: names are resolved as
    jupyter_client does, so ``python`` is ``python3``)."""
    findings: list[Finding] = []
    if app.kernel_name is None:
        findings.append(Finding("NBA010", "the notebook's metadata has no kernelspec, so it is "
                                "not known which kernel runs it"))
    wanted = override or app.kernel_name
    if wanted is None:
        return findings
    if resolve_kernel_name(wanted) is None:
        which = "requested" if override else "the notebook's"
        installed = installed_kernels()
        findings.append(Finding("NBA011", f"{which} kernel '{wanted}' is not installed here "
                                f"(installed: {', '.join(installed) or 'none'})"))
    return findings


# -- parameters, tags and metadata ----------------------------------------------------------------


def structure_findings(app: AppNotebook) -> list[Finding]:
    """NBA020/021/023 (parameters cells), NBA030 (widget cells), NBA031/032 (title, description)."""
    nb = app.nb
    findings: list[Finding] = []
    if not app.parameters_cells:
        tagged_markdown = [i for i in app.cells_tagged("parameters")
                           if nb.cells[i].get("cell_type") != "code"]
        extra = (f" (cell {tagged_markdown[0] + 1} has the tag but is not a code cell)"
                 if tagged_markdown else "")
        findings.append(Finding("NBA020", "no code cell is tagged `parameters`" + extra))
    for index in app.parameters_cells[1:]:
        findings.append(cell_finding(
            "NBA021", f"a second `parameters` cell (the first is cell "
            f"{app.parameters_cells[0] + 1}); papermill only reads the first", nb, index))
    for index in app.cells_tagged(INJECTED_TAG):
        findings.append(cell_finding("NBA023", "cell tagged `injected-parameters` (left by a "
                                     "papermill run?)", nb, index))
    if not app.widget_cells:
        findings.append(Finding("NBA030", "no cell is tagged `widget`, so the app would show "
                                "nothing"))
    mistyped = {f.message.split("`")[1] for f in app.findings if f.code == "NBA033"
                and f.message.count("`") >= 2}
    if not app.meta.title.strip() and "metadata.nbapps.title" not in mistyped:
        findings.append(Finding("NBA031", "`metadata.nbapps.title` is missing or empty"))
    if not app.meta.description.strip() and "metadata.nbapps.description" not in mistyped:
        findings.append(Finding("NBA032", "`metadata.nbapps.description` is missing or empty"))
    return findings


# -- what the app says: starter text, heading vs title -------------------------------------------

_HEADING = re.compile(r"^ {0,3}#\s+(.+?)\s*#*\s*$")
_SETEXT = re.compile(r"^ {0,3}=+\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_MARKS = re.compile(r"[*_`~]+|<[^>]+>")


def _normal(text: str) -> str:
    """Text as compared: without markdown marks, case-folded, spaces collapsed, no final
    punctuation."""
    text = _MD_MARKS.sub("", _MD_LINK.sub(r"\1", text))
    return " ".join(text.casefold().split()).rstrip(" .:!")


def first_heading(source: str) -> str | None:
    """The first level-1 heading of a markdown cell (``# Title`` or ``Title`` over ``===``)."""
    lines = source.splitlines()
    fenced = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced:
            continue
        match = _HEADING.match(line)
        if match:
            return _MD_MARKS.sub("", _MD_LINK.sub(r"\1", match.group(1))).strip()
        if i and _SETEXT.match(line) and lines[i - 1].strip():
            return _MD_MARKS.sub("", _MD_LINK.sub(r"\1", lines[i - 1])).strip()
    return None


def authoring_findings(app: AppNotebook) -> list[Finding]:
    """NBA035 (``nbapps init``'s starter text is still there) and NBA036 (the app's first
    heading is not its title)."""
    from ..scaffold import DRAFT_TAG, PLACEHOLDER_PHRASES

    findings: list[Finding] = []
    phrases = [p.casefold() for p in PLACEHOLDER_PHRASES]
    left = []
    if any(p in app.meta.description.casefold() for p in phrases):
        left.append("`metadata.nbapps.description` is the starter sentence")
    if DRAFT_TAG in app.meta.tags:
        left.append(f"the tag `{DRAFT_TAG}` is still set")
    if left:
        findings.append(Finding("NBA035", "; ".join(left) + " (from `nbapps init`)"))
    shown = app.widget_cells or list(range(len(app.nb.cells)))
    for index, cell in enumerate(app.nb.cells):
        if cell.get("cell_type") == "markdown" and index in shown and any(
                p in " ".join(str(cell.get("source") or "").split()).casefold()
                for p in phrases):
            findings.append(cell_finding("NBA035", "the app's introduction still asks to be "
                                         "replaced (starter text of `nbapps init`)", app.nb,
                                         index))
    title = app.meta.title.strip()
    if not title:
        return findings
    for index in shown:
        cell = app.nb.cells[index]
        if cell.get("cell_type") != "markdown":
            continue
        heading = first_heading(str(cell.get("source") or ""))
        if heading is None:
            continue
        if _normal(heading) != _normal(title):
            findings.append(cell_finding(
                "NBA036", f"the app's first heading “{heading}” is not its title “{title}” "
                "(`metadata.nbapps.title`, shown by the gallery and the app's frame)",
                app.nb, index))
        break
    return findings


@dataclass(frozen=True)
class ParameterSet:
    """One entry of ``metadata.nbapps.test_parameters`` that passed the contract."""

    index: int
    values: dict[str, Any]

    @property
    def label(self) -> str:
        shown = json.dumps(self.values, ensure_ascii=False, default=str, sort_keys=True)
        if len(shown) > 60:
            shown = shown[:59] + "…}"
        return f"test_parameters[{self.index}] {shown}"


_TEST_CODES = {"NBA101": "NBA040", "NBA102": "NBA041", "NBA103": "NBA042"}


def test_parameter_findings(app: AppNotebook) -> tuple[list[Finding], list[ParameterSet]]:
    """NBA040/041/042 for each test parameter set, and the sets that may run."""
    findings: list[Finding] = []
    runnable: list[ParameterSet] = []
    sets = app.meta.test_parameters
    if not sets:
        return findings, runnable
    if any(f.code == "NBA022" for f in app.findings):
        return findings, runnable  # the contract is incomplete: checking would mislead
    for index, values in enumerate(sets):
        problems = app.contract.problems(values)
        if not app.parameters_cells and values:
            problems = [("NBA101", f"the notebook has no `parameters` cell, so "
                                   f"{', '.join(map(repr, values))} cannot be set")]
        for code, message in problems:
            findings.append(Finding(_TEST_CODES.get(code, code),
                                    f"test_parameters[{index}]: {message}"))
        if not problems:
            runnable.append(ParameterSet(index, app.contract.check(values)))
    return findings, runnable


# -- declared files -------------------------------------------------------------------------------


def _path_problem(folder: Path | None, value: str, *, want_file: bool) -> str | None:
    text = value.strip()
    if not text:
        return "is empty"
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).drive or text.startswith("~"):
        return "is an absolute path; give it relative to the notebook's folder"
    if ".." in posix.parts:
        return "goes outside the notebook's folder (`..`); only files beside it are shipped"
    if folder is None:
        return None
    target = folder / posix
    if any(ch in text for ch in "*?["):
        matches = [m for m in folder.glob(posix.as_posix()) if not want_file or m.is_file()]
        if not matches:
            return "matches no file"
        candidates = matches
    elif not target.exists():
        return "does not exist"
    elif want_file and not target.is_file():
        return "is not a file"
    else:
        candidates = [target]
    root = folder.resolve()
    for candidate in candidates:
        try:
            candidate.resolve().relative_to(root)
        except ValueError:
            return "points outside the notebook's folder (through a link)"
    return None


def file_findings(app: AppNotebook) -> list[Finding]:
    """NBA062 (declared data files) and NBA063 (thumbnail): present, inside the folder."""
    findings: list[Finding] = []
    for value in app.meta.files:
        problem = _path_problem(app.folder, value, want_file=False)
        if problem:
            findings.append(Finding("NBA062", f"`metadata.nbapps.files` entry {value!r} "
                                    f"{problem}"))
    if app.meta.thumbnail is not None:
        problem = _path_problem(app.folder, app.meta.thumbnail, want_file=True)
        if problem:
            findings.append(Finding("NBA063", f"`metadata.nbapps.thumbnail` {app.meta.thumbnail!r}"
                                    f" {problem}"))
    return findings


# -- shell escapes --------------------------------------------------------------------------------

#: line magics that run a shell or a package manager
SHELL_LINE_MAGICS = frozenset({"system", "sx", "sc", "pip", "conda", "mamba", "micromamba"})
#: cell magics that hand the cell to another program
SHELL_CELL_MAGICS = frozenset({"bash", "sh", "script", "system", "perl", "ruby", "python2",
                               "python3", "pypy", "cmd", "powershell"})
#: cell magics whose body is Python (checked recursively)
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug", "writefile"})


def _magic_call(node: ast.Call) -> tuple[str, list[ast.expr]] | None:
    """``("system", args)`` for ``get_ipython().system(...)`` and friends."""
    func = node.func
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):
        return func.attr, list(node.args)
    return None


def _const(args: list[ast.expr], index: int) -> str | None:
    if len(args) > index and isinstance(args[index], ast.Constant):
        value = args[index].value
        return value if isinstance(value, str) else None
    return None


def shell_lines(source: str, _depth: int = 0) -> list[int]:
    """1-based lines of ``source`` (IPython syntax) that run shell commands."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        code = TransformerManager().transform_cell(source)
        tree = ast.parse(code)
    except Exception:  # noqa: BLE001 - not Python: nothing to say statically
        return []
    lines: list[int] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        call = _magic_call(node)
        if call is None:
            continue
        method, args = call
        magic = _const(args, 0)
        shell = (method in ("system", "getoutput")
                 or (method == "run_line_magic" and magic in SHELL_LINE_MAGICS)
                 or (method == "run_cell_magic" and magic in SHELL_CELL_MAGICS))
        if shell:
            lines.append(node.lineno)
        elif method == "run_cell_magic" and magic in PYTHON_CELL_MAGICS and _depth < 3:
            body = _const(args, 2)
            if body and magic != "writefile":
                lines.extend(line + 1 for line in shell_lines(body, _depth + 1))
    return sorted(set(lines))


def shell_findings(app: AppNotebook) -> list[Finding]:
    """NBA061: ``!cmd``, ``!!cmd``, ``x = !cmd``, ``%system``, ``%sx``, ``%pip``, ``%%bash``..."""
    findings: list[Finding] = []
    for index, cell in enumerate(app.nb.cells):
        if cell.get("cell_type") != "code" or index in app.parameters_cells:
            continue
        source = cell.get("source") or ""
        if "!" not in source and "%" not in source and "get_ipython" not in source:
            continue
        found = shell_lines(source)
        if not found:
            continue
        src_lines = source.splitlines()
        shown = []
        for line in found[:3]:
            text = src_lines[line - 1].strip() if line <= len(src_lines) else ""
            shown.append(f"line {line}: `{text[:60]}`")
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        findings.append(cell_finding("NBA061", "runs shell commands: " + ", ".join(shown) + more,
                                     app.nb, index))
    return findings


# -- stored outputs: size and secrets -------------------------------------------------------------


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "replace"))
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    return 0


def output_sizes(app: AppNotebook) -> dict[int, int]:
    """Bytes of stored output content (text, data of every mime type, tracebacks) per cell."""
    sizes: dict[int, int] = {}
    for index, cell in enumerate(app.nb.cells):
        total = 0
        for output in cell.get("outputs") or []:
            total += _size(output.get("text")) + _size(output.get("data"))
            total += _size(output.get("traceback"))
        if total:
            sizes[index] = total
    return sizes


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def content_findings(app: AppNotebook, max_output_bytes: int) -> list[Finding]:
    """NBA060 (outputs too large) and NBA050/051 (secrets in sources and outputs)."""
    findings: list[Finding] = []
    sizes = output_sizes(app)
    total = sum(sizes.values())
    per_output: int | None = None
    if total > max_output_bytes:
        per_output = PARTIAL_SCAN_CHARS
        biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        listed = ", ".join(f"cell {i + 1} ({_mb(n)})" for i, n in biggest)
        findings.append(cell_finding(
            "NBA060", f"stored outputs total {_mb(total)}, above the {_mb(max_output_bytes)} "
            f"limit; largest: {listed} (only the first {_mb(per_output)} of each output was "
            "scanned for secrets)", app.nb, biggest[0][0]))
    grouped: dict[tuple[int, bool], list[str]] = {}
    for hit in scan_notebook(app.nb, per_output=per_output):
        entry = f"{hit.kind} in {hit.where}" if hit.in_output else f"{hit.kind} on {hit.where}"
        items = grouped.setdefault((hit.cell, hit.in_output), [])
        if entry not in items:
            items.append(entry)
    for (index, in_output), items in sorted(grouped.items()):
        code = "NBA051" if in_output else "NBA050"
        what = "stored output holds" if in_output else "source holds"
        findings.append(cell_finding(code, f"{what} a likely secret: " + "; ".join(items[:5])
                                     + (f" (and {len(items) - 5} more)" if len(items) > 5 else ""),
                                     app.nb, index))
    return findings


def schedule_findings(app: AppNotebook) -> list[Finding]:
    """NBA085-NBA089: ``metadata.nbapps.schedules`` (:func:`nbapps.schedules.parse_schedules`);
    parameters are checked against the contract unless the parameters cell is unusable
    (NBA022 already says so)."""
    from ..schedules import parse_schedules

    if not app.meta.schedules:
        return []
    usable = not any(f.code == "NBA022" for f in app.findings)
    return parse_schedules(app.meta.schedules, app.contract if usable else None)[1]


def variant_findings(app: AppNotebook) -> list[Finding]:
    """NBA090-NBA094: ``metadata.nbapps.variants`` (:func:`nbapps.variants.parse_variants`),
    checked against the contract unless the parameters cell is unusable (NBA022)."""
    from ..variants import parse_variants

    if not app.meta.variants:
        return []
    usable = not any(f.code == "NBA022" for f in app.findings)
    return parse_variants(app.meta.variants, app.contract if usable else None)[1]


def output_findings(app: AppNotebook) -> list[Finding]:
    """NBA080-NBA082: ``metadata.nbapps.outputs`` (the files a run keeps, :mod:`nbapps.runs`)."""
    from ..runs.program import MAX_OUTPUTS, safe_output_name

    findings: list[Finding] = []
    seen: set[str] = set()
    if len(app.meta.outputs) > MAX_OUTPUTS:
        findings.append(Finding("NBA081", f"`metadata.nbapps.outputs` lists "
                                f"{len(app.meta.outputs)} files; at most {MAX_OUTPUTS}"))
    for value in app.meta.outputs:
        name = safe_output_name(value)
        if name is None:
            findings.append(Finding("NBA080", f"`metadata.nbapps.outputs` entry {value!r} is "
                                    "not a plain relative file name"))
        elif name in seen:
            findings.append(Finding("NBA082", f"`metadata.nbapps.outputs` lists {name!r} "
                                    "twice"))
        else:
            seen.add(name)
    return findings


def static_findings(app: AppNotebook, *, kernel_override: str | None = None) -> list[Finding]:
    """The quick rules (all but test parameters, content scanning and running)."""
    findings = kernel_findings(app, kernel_override)
    findings += structure_findings(app)
    findings += authoring_findings(app)
    findings += file_findings(app)
    findings += shell_findings(app)
    findings += schedule_findings(app)
    findings += variant_findings(app)
    findings += output_findings(app)
    return findings

