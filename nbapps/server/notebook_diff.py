"""What changed from the live version to a submission: sources first, then outputs.

Cells are matched with nbdime's multilevel matcher (``compute_snakes_multilevel``: strict
predicates anchor the alignment, looser ones fill the gaps between anchors) using our own
predicates, from strict to loose: same cell id; same type and same source; same type and
similar source (a difflib ratio over characters or lines, so an edited markdown paragraph or
code cell stays *one* modified cell instead of a deletion plus an insertion). Between two
anchors, leftover deleted and added cells of the same type, as many on each side, are paired
too: a rewritten cell that kept its place is a modification.

Each matched pair is compared on what matters to a reviewer: cell type, tags and source (the
*source* section, from the stored source notebooks), and normalized outputs (the *output*
section, from the executed copies). Volatile data never shows as a change: execution counts,
cell ids, run timestamps and papermill metadata, widget state, widget model ids (a widget
output is compared as "widget: IntSlider"), memory addresses in reprs, output metadata, and
how a kernel split one print into several stream messages.

Line changes come with inline (word/character) changes. The result is plain data
(:class:`NotebookDiff`, JSON round-trip for the cache); the page template renders it escaped.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

#: cell metadata that belongs to a run or to an editor's view, not to the app
VOLATILE_CELL_META = frozenset({
    "execution", "papermill", "ExecuteTime", "collapsed", "scrolled", "jupyter", "transient",
    "tags", "editable", "deletable", "trusted", "id",
})
#: notebook metadata that a run or an editor rewrites
VOLATILE_NB_META = frozenset({"widgets", "papermill", "language_info", "toc", "vscode"})
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
CONTEXT = 3
MAX_LINES = 4000
_POINTER = re.compile(r"0x[0-9a-fA-F]{6,16}")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


# -- values ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    text: str
    changed: bool = False


@dataclass(frozen=True)
class Line:
    """One line of a cell diff: ``same``, ``del``, ``add``, or ``skip`` (n unchanged lines)."""

    kind: str
    segments: tuple[Segment, ...] = ()
    old_no: int | None = None
    new_no: int | None = None
    skipped: int = 0


@dataclass(frozen=True)
class CellChange:
    status: str  # "added" | "deleted" | "modified"
    cell_type: str
    old_number: int | None  # 1-based
    new_number: int | None
    notes: tuple[str, ...] = ()
    lines: tuple[Line, ...] = ()

    @property
    def label(self) -> str:
        if self.status == "added":
            return f"new cell {self.new_number}"
        if self.status == "deleted":
            return f"cell {self.old_number} removed"
        if self.old_number == self.new_number:
            return f"cell {self.new_number}"
        return f"cell {self.old_number} → {self.new_number}"


@dataclass(frozen=True)
class NotebookDiff:
    sources: tuple[CellChange, ...] = ()
    outputs: tuple[CellChange, ...] = ()
    metadata: tuple[str, ...] = ()
    #: why there is no output comparison (no executed copy yet), else None
    outputs_missing: str | None = None
    cells_old: int = 0
    cells_new: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.sources or self.outputs or self.metadata)

    @property
    def source_counts(self) -> dict[str, int]:
        counts = {"modified": 0, "added": 0, "deleted": 0}
        for change in self.sources:
            counts[change.status] += 1
        return counts

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> NotebookDiff:
        data = json.loads(text)

        def change(c: dict[str, Any]) -> CellChange:
            lines = tuple(Line(kind=ln["kind"], old_no=ln["old_no"], new_no=ln["new_no"],
                               skipped=ln["skipped"],
                               segments=tuple(Segment(**s) for s in ln["segments"]))
                          for ln in c["lines"])
            return CellChange(status=c["status"], cell_type=c["cell_type"],
                              old_number=c["old_number"], new_number=c["new_number"],
                              notes=tuple(c["notes"]), lines=lines)

        return cls(sources=tuple(change(c) for c in data["sources"]),
                   outputs=tuple(change(c) for c in data["outputs"]),
                   metadata=tuple(data["metadata"]), outputs_missing=data["outputs_missing"],
                   cells_old=data["cells_old"], cells_new=data["cells_new"])


# -- matching -------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class _Cell:
    """The comparable part of a cell (hashable for nbdime's predicates)."""

    cell_type: str
    source: str
    cell_id: str | None
    tags: tuple[str, ...]


def _cell(c: Any) -> _Cell:
    tags = c.get("metadata", {}).get("tags", [])
    cell_id = c.get("id")
    return _Cell(str(c.get("cell_type", "")), _text(c.get("source")),
                 cell_id if isinstance(cell_id, str) and cell_id else None,
                 tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ())


def similar_text(a: str, b: str, threshold: float = 0.5) -> bool:
    """Whether ``b`` reads as an edit of ``a``: characters or lines mostly shared."""
    if a == b:
        return True
    if not a.strip() or not b.strip():
        return False
    if len(a) < 12 and len(b) < 12:
        return True
    chars = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if chars.real_quick_ratio() >= threshold and chars.quick_ratio() >= threshold \
            and chars.ratio() >= threshold:
        return True
    lines_a, lines_b = a.splitlines(), b.splitlines()
    if min(len(lines_a), len(lines_b)) >= 3:
        return difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False).ratio() >= 0.5
    return False


def _same_id(x: _Cell, y: _Cell) -> bool:
    return x.cell_id is not None and x.cell_id == y.cell_id


def _same(x: _Cell, y: _Cell) -> bool:
    return x.cell_type == y.cell_type and x.source == y.source


def _similar(x: _Cell, y: _Cell) -> bool:
    return x.cell_type == y.cell_type and similar_text(x.source, y.source)


def match_cells(old: list[_Cell], new: list[_Cell]) -> list[tuple[int | None, int | None]]:
    """Aligned (old index, new index) pairs; None on one side for a deletion or insertion."""
    from nbdime.diffing.snakes import compute_snakes_multilevel

    snakes = compute_snakes_multilevel(old, new, [_similar, _same, _same_id])
    pairs: list[tuple[int | None, int | None]] = []
    i = j = 0
    for si, sj, n in [*snakes, (len(old), len(new), 0)]:
        pairs.extend(_gap(old, new, list(range(i, si)), list(range(j, sj))))
        pairs.extend((si + k, sj + k) for k in range(n))
        i, j = si + n, sj + n
    return pairs


def _gap(old: list[_Cell], new: list[_Cell], dels: list[int], adds: list[int]
         ) -> list[tuple[int | None, int | None]]:
    """A stretch between anchors: paired positionally when it is a like-for-like rewrite."""
    if dels and len(dels) == len(adds) and all(
            old[a].cell_type == new[b].cell_type for a, b in zip(dels, adds, strict=True)):
        return list(zip(dels, adds, strict=True))
    return [*((a, None) for a in dels), *((None, b) for b in adds)]


# -- line diffs with inline changes ---------------------------------------------------------------

def _inline(a: str, b: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    old: list[Segment] = []
    new: list[Segment] = []
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            old.append(Segment("".join(ta[i1:i2])))
            new.append(Segment("".join(tb[j1:j2])))
            continue
        if i2 > i1:
            old.append(Segment("".join(ta[i1:i2]), True))
        if j2 > j1:
            new.append(Segment("".join(tb[j1:j2]), True))
    return _merge(old), _merge(new)


def _merge(segments: list[Segment]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for s in segments:
        if out and out[-1].changed == s.changed:
            out[-1] = Segment(out[-1].text + s.text, s.changed)
        else:
            out.append(s)
    return tuple(out)


def line_diff(a: str, b: str, context: int = CONTEXT) -> tuple[Line, ...]:
    """Unified-style lines of ``a`` → ``b``; replaced lines carry inline changes."""
    la, lb = a.splitlines()[:MAX_LINES], b.splitlines()[:MAX_LINES]
    rows: list[Line] = []
    sm = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            rows.extend(Line("same", (Segment(la[i1 + k]),), i1 + k + 1, j1 + k + 1)
                        for k in range(i2 - i1))
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        dels: list[Line] = []
        adds: list[Line] = []
        for k in range(paired):
            old, new = _inline(la[i1 + k], lb[j1 + k])
            dels.append(Line("del", old, old_no=i1 + k + 1))
            adds.append(Line("add", new, new_no=j1 + k + 1))
        dels.extend(Line("del", (Segment(la[i], True),), old_no=i + 1)
                    for i in range(i1 + paired, i2))
        adds.extend(Line("add", (Segment(lb[j], True),), new_no=j + 1)
                    for j in range(j1 + paired, j2))
        rows.extend(dels + adds)
    return _with_context(rows, context)


def _with_context(rows: list[Line], context: int) -> tuple[Line, ...]:
    changed = [i for i, r in enumerate(rows) if r.kind != "same"]
    if not changed:
        return ()
    keep = set()
    for i in changed:
        keep.update(range(max(0, i - context), min(len(rows), i + context + 1)))
    out: list[Line] = []
    skipped = 0
    for i, row in enumerate(rows):
        if i in keep:
            if skipped:
                out.append(Line("skip", skipped=skipped))
                skipped = 0
            out.append(row)
        else:
            skipped += 1
    if skipped:
        out.append(Line("skip", skipped=skipped))
    return tuple(out)


def _all(kind: str, text: str) -> tuple[Line, ...]:
    lines = text.splitlines()[:MAX_LINES]
    if kind == "add":
        return tuple(Line("add", (Segment(t),), new_no=n + 1) for n, t in enumerate(lines))
    return tuple(Line("del", (Segment(t),), old_no=n + 1) for n, t in enumerate(lines))


# -- outputs as comparable text -------------------------------------------------------------------

def _models(nb: Any) -> dict[str, Any]:
    widgets = (nb.get("metadata") or {}).get("widgets") or {}
    state = widgets.get("application/vnd.jupyter.widget-state+json") or {}
    models = state.get("state") if isinstance(state, dict) else None
    return models if isinstance(models, dict) else {}


def _widget_name(models: dict[str, Any], view: Any) -> str:
    model_id = view.get("model_id") if isinstance(view, dict) else None
    model = models.get(model_id) if isinstance(model_id, str) else None
    if not isinstance(model, dict):
        return "widget"
    state = model.get("state") if isinstance(model.get("state"), dict) else {}
    name = str(state.get("_model_name") or model.get("model_name") or "widget")
    return "widget: " + (name[:-5] if name.endswith("Model") and len(name) > 5 else name)


def _data_text(mime: str, value: Any) -> str:
    if mime.startswith("image/") and mime != "image/svg+xml":
        raw = _text(value).replace("\n", "")
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        return f"[{mime}, {len(raw) * 3 // 4 // 1024} KiB, sha256 {digest}]"
    if mime == "application/json" or not isinstance(value, (str, list)):
        return json.dumps(value, indent=1, sort_keys=True, default=str)
    return _text(value)


def outputs_text(cell: Any, models: dict[str, Any]) -> str:
    """A code cell's outputs as text with the volatile parts normalized away."""
    parts: list[tuple[str, str]] = []
    for out in cell.get("outputs") or []:
        kind = out.get("output_type")
        if kind == "stream":
            name = str(out.get("name", "stdout"))
            text = _text(out.get("text"))
            if parts and parts[-1][0] == f"[{name}]":  # one print, several messages
                parts[-1] = (parts[-1][0], parts[-1][1] + text)
            else:
                parts.append((f"[{name}]", text))
        elif kind == "error":
            tb = "\n".join(_ANSI.sub("", _text(x)) for x in out.get("traceback") or [])
            parts.append((f"[error {out.get('ename', '')}]", f"{out.get('evalue', '')}\n{tb}"))
        elif kind in ("display_data", "execute_result"):
            data = out.get("data") or {}
            if WIDGET_VIEW_MIME in data:
                parts.append(("[" + _widget_name(models, data[WIDGET_VIEW_MIME]) + "]", ""))
                continue
            for mime in sorted(data):
                label = "result" if kind == "execute_result" else "display"
                parts.append((f"[{label} {mime}]", _data_text(mime, data[mime])))
    lines = []
    for header, body in parts:
        lines.append(header)
        if body:
            lines.extend(_POINTER.sub("0x…", body).splitlines())
    return "\n".join(lines)


# -- the diff -------------------------------------------------------------------------------------

def _tag_note(old: _Cell, new: _Cell) -> list[str]:
    added = [t for t in new.tags if t not in old.tags]
    removed = [t for t in old.tags if t not in new.tags]
    notes = []
    if added:
        notes.append("tags added: " + ", ".join(added))
    if removed:
        notes.append("tags removed: " + ", ".join(removed))
    return notes


def _meta_note(old: Any, new: Any) -> list[str]:
    a = {k: v for k, v in (old.get("metadata") or {}).items() if k not in VOLATILE_CELL_META}
    b = {k: v for k, v in (new.get("metadata") or {}).items() if k not in VOLATILE_CELL_META}
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ["cell metadata changed: " + ", ".join(keys)] if keys else []


def _source_change(o: int | None, n: int | None, old_nb: Any, new_nb: Any,
                   old_cells: list[_Cell], new_cells: list[_Cell]) -> CellChange | None:
    if o is None and n is not None:
        c = new_cells[n]
        notes = (("tags: " + ", ".join(c.tags),) if c.tags else ())
        return CellChange("added", c.cell_type, None, n + 1, notes, _all("add", c.source))
    if n is None and o is not None:
        c = old_cells[o]
        return CellChange("deleted", c.cell_type, o + 1, None, (), _all("del", c.source))
    assert o is not None and n is not None
    a, b = old_cells[o], new_cells[n]
    notes = []
    if a.cell_type != b.cell_type:
        notes.append(f"type changed from {a.cell_type} to {b.cell_type}")
    notes += _tag_note(a, b) + _meta_note(old_nb.cells[o], new_nb.cells[n])
    lines = line_diff(a.source, b.source)
    if not notes and not lines:
        return None
    return CellChange("modified", b.cell_type, o + 1, n + 1, tuple(notes), lines)


def _output_change(o: int | None, n: int | None, old_run: Any, new_run: Any
                   ) -> CellChange | None:
    old_cell = old_run[o] if o is not None and o < len(old_run) else None
    new_cell = new_run[n] if n is not None and n < len(new_run) else None
    if (new_cell or old_cell or {}).get("cell_type") != "code":
        return None
    a = outputs_text(old_cell, old_run.models) if old_cell is not None else ""
    b = outputs_text(new_cell, new_run.models) if new_cell is not None else ""
    if a == b:
        return None
    if not a:
        return CellChange("added", "code", o + 1 if o is not None else None,
                          n + 1 if n is not None else None, (), _all("add", b))
    if not b:
        return CellChange("deleted", "code", o + 1 if o is not None else None,
                          n + 1 if n is not None else None, (), _all("del", a))
    return CellChange("modified", "code", o + 1 if o is not None else None,
                      n + 1 if n is not None else None, (), line_diff(a, b))


class _Run(list):  # type: ignore[type-arg]
    """An executed copy's cells aligned to its source (None where missing), plus its models."""

    models: dict[str, Any]


def _run_cells(source: Any, executed: Any) -> _Run:
    run = _Run()
    run.models = _models(executed) if executed is not None else {}
    if executed is None:
        return run
    cells = [c for c in executed.cells
             if "injected-parameters" not in (c.get("metadata", {}).get("tags") or [])]
    if len(cells) == len(source.cells):
        run.extend(cells)
    else:
        ids = {c.get("id"): c for c in cells if c.get("id")}
        run.extend(ids.get(c.get("id")) for c in source.cells)
    return run


def _nb_meta(old: Any, new: Any) -> list[str]:
    a = {k: v for k, v in (old.get("metadata") or {}).items() if k not in VOLATILE_NB_META}
    b = {k: v for k, v in (new.get("metadata") or {}).items() if k not in VOLATILE_NB_META}
    notes = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            sub = sorted(k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k))
            notes.append(f"notebook metadata {key}: " + ", ".join(sub) + " changed")
        else:
            notes.append(f"notebook metadata {key} changed")
    return notes


def diff_notebooks(old_source: Any, new_source: Any, old_executed: Any = None,
                   new_executed: Any = None) -> NotebookDiff:
    """The review diff (see the module docstring); executed copies may be None."""
    old_cells = [_cell(c) for c in old_source.cells]
    new_cells = [_cell(c) for c in new_source.cells]
    pairs = match_cells(old_cells, new_cells)
    sources = [c for o, n in pairs
               if (c := _source_change(o, n, old_source, new_source, old_cells, new_cells))]
    outputs: list[CellChange] = []
    missing = None
    if old_executed is None or new_executed is None:
        which = "the live version" if old_executed is None else "this submission"
        missing = f"No executed copy of {which} yet: outputs cannot be compared."
    else:
        old_run = _run_cells(old_source, old_executed)
        new_run = _run_cells(new_source, new_executed)
        outputs = [c for o, n in pairs if (c := _output_change(o, n, old_run, new_run))]
    return NotebookDiff(sources=tuple(sources), outputs=tuple(outputs),
                        metadata=tuple(_nb_meta(old_source, new_source)),
                        outputs_missing=missing, cells_old=len(old_cells),
                        cells_new=len(new_cells))


__all__ = ["CellChange", "Line", "NotebookDiff", "Segment", "diff_notebooks", "line_diff",
           "match_cells", "outputs_text", "similar_text"]
