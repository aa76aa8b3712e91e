"""The notebooks a runner serves, generated from the app notebook of an approved bundle.

Two variants sit next to the bundle's files in the runner's read-only app folder:

``nbapps-default.ipynb``
    The app as published. Voilà's preheated kernels execute it completely ahead of requests, so a
    viewer with default parameters gets a fully rendered page from the pool.

``nbapps-custom.ipynb`` (only when the app has parameters)
    The same cells, plus two hidden cells right after the ``parameters`` cell: one imports ahead
    of time the modules that the later cells import, the next waits for the request that takes
    the kernel (Voilà's ``wait_for_request`` protocol, spoken by :mod:`.kernel_side` with the
    standard library only), decodes the values the proxy put in the query, checks them again
    against the parameter contract embedded in the cell (defence in depth: the proxy has already
    checked them) and assigns them. So kernel
    start, the cells above the parameters and most imports are paid before the request; the
    request pays only the cells after the parameters cell.

Voilà has no tag filter. In both variants every cell that is not tagged ``widget`` (when the
notebook has ``widget`` cells) gets the standard ``metadata.jupyter.source_hidden`` and
``outputs_hidden`` flags, which the ``nbapps`` Voilà template (``share/voila/templates/nbapps``)
honours by not rendering the cell; every cell still runs.
"""
from __future__ import annotations

import ast
import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell

DEFAULT_NAME = "nbapps-default.ipynb"
CUSTOM_NAME = "nbapps-custom.ipynb"
VARIANT_NAMES = (DEFAULT_NAME, CUSTOM_NAME)
#: The one query key the proxy sends to a runner for custom parameters.
QUERY_KEY = "nbapps"
WIDGET_TAG = "widget"
PARAMETERS_TAG = "parameters"
#: ``metadata.nbapps.role`` of the cells nbapps adds.
ROLE_PRELOAD = "preload"
ROLE_WAIT = "wait-for-request"

_WAIT_CALL = """
globals().update(_nbapps_parameters(_nbapps_request_query(), {contract}, {key!r}))
del _nbapps_ws_first_text, _nbapps_request_query, _nbapps_parameters
"""


def _kernel_side_source() -> str:
    """The functions of :mod:`.kernel_side` as cell source (no docstring, no imports)."""
    source = Path(__file__).with_name("kernel_side.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    parts = [ast.get_source_segment(source, node) or "" for node in tree.body
             if isinstance(node, ast.FunctionDef)]
    return "\n\n\n".join(parts)


def wait_cell_source(contract: list[Mapping[str, Any]]) -> str:
    """The hidden cell that waits for the request and assigns its checked parameters."""
    contract_literal = repr(json.loads(json.dumps([dict(p) for p in contract])))
    return ("# nbapps: wait for this page's request, then apply its parameters (checked "
            "again here)\n" + _kernel_side_source() + "\n\n"
            + _WAIT_CALL.format(contract=contract_literal, key=QUERY_KEY))


_PRELOAD_CELL = '''\
# nbapps: import now, before any request, the modules that the cells below import
def _nbapps_preload(names):
    import importlib
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass


_nbapps_preload({names!r})
del _nbapps_preload
'''


@dataclass(frozen=True)
class Variants:
    """The served notebooks: ``default`` always, ``custom`` when the app has parameters."""

    default: nbformat.NotebookNode
    custom: nbformat.NotebookNode | None
    has_widget_cells: bool
    preloaded: tuple[str, ...] = ()
    #: modules the kernel template imports (:func:`template_imports`)
    template_imports: tuple[str, ...] = ()


def tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def encode_values(values: Mapping[str, Any]) -> str:
    """Typed parameter values as the query value the custom variant decodes (base64url JSON)."""
    data = json.dumps(dict(values), separators=(",", ":"), sort_keys=True, allow_nan=False)
    return base64.urlsafe_b64encode(data.encode("utf-8")).decode("ascii").rstrip("=")


def decode_values(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode_values` (used by tests and tools)."""
    padded = text + "=" * (-len(text) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("not a mapping")
    return value


def _python_of(source: str) -> str | None:
    """Cell source as plain Python (magics translated), or None when it is not Python."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return str(TransformerManager().transform_cell(source))
    except Exception:  # IPython missing or a cell it cannot transform
        return source


def imported_modules(sources: list[str]) -> list[str]:
    """Absolute module names imported anywhere in ``sources``, in first-seen order."""
    seen: dict[str, None] = {}
    for source in sources:
        code = _python_of(source)
        if code is None:
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    seen.setdefault(alias.name, None)
            elif (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                  and node.module != "__future__"):
                seen.setdefault(node.module, None)
    return list(seen)


def _leading_imports(tree: ast.Module, out: dict[str, None]) -> bool:
    """Add the modules of ``tree``'s leading imports to ``out``; False at the first other code."""
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.setdefault(alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                return False
            if node.module != "__future__":
                out.setdefault(node.module, None)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        elif isinstance(node, ast.Expr) and _is_matplotlib_magic(node.value):
            continue  # %matplotlib ...: selects a backend, imports nothing of the app's
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _literal(node.value):
            continue  # plain literal assignments (the parameters cell)
        else:
            return False
    return True


def _literal(node: ast.expr | None) -> bool:
    if node is None:
        return True
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _is_matplotlib_magic(node: ast.expr) -> bool:
    """``get_ipython().run_line_magic('matplotlib', ...)``, what IPython makes of the magic."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_line_magic" and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and node.args[0].value == "matplotlib")


def template_imports(nb: nbformat.NotebookNode) -> list[str]:
    """The modules a runner's kernel template may import ahead: what the notebook imports
    before it runs any code of its own (see :mod:`.forkserver` for why no further)."""
    found: dict[str, None] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        code = _python_of(cell.source)
        try:
            tree = ast.parse(code or "")
        except SyntaxError:
            break
        if code is None or not _leading_imports(tree, found):
            break
    return list(found)


def _hide(cell: nbformat.NotebookNode, hidden: bool) -> None:
    meta = cell.setdefault("metadata", {})
    jupyter = dict(meta.get("jupyter", {}) or {})
    if hidden:
        jupyter["source_hidden"] = True
        jupyter["outputs_hidden"] = True
    else:
        jupyter.pop("source_hidden", None)
        jupyter.pop("outputs_hidden", None)
    if jupyter:
        meta["jupyter"] = jupyter
    else:
        meta.pop("jupyter", None)


def _injected(source: str, role: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source, metadata={"nbapps": {"role": role}})
    _hide(cell, True)
    return cell


def _clean(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, bool]:
    """A copy without outputs, with non-widget cells hidden when there are widget cells."""
    out = nbformat.from_dict(json.loads(json.dumps(nb)))
    has_widgets = any(WIDGET_TAG in tags(c) for c in out.cells)
    for cell in out.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        _hide(cell, has_widgets and WIDGET_TAG not in tags(cell))
    return out, has_widgets


def build_variants(
    nb: nbformat.NotebookNode,
    contract: list[Mapping[str, Any]] | None = None,
    *,
    preload: bool = True,
) -> Variants:
    """The served notebooks for app notebook ``nb`` and its parameter contract (list of dicts).

    Without a ``parameters`` cell (or with an empty contract) there is no custom variant.
    """
    default, has_widgets = _clean(nb)
    ahead = tuple(template_imports(nb))
    params_at = [i for i, c in enumerate(default.cells)
                 if c.cell_type == "code" and PARAMETERS_TAG in tags(c)]
    if not params_at or not contract:
        return Variants(default, None, has_widgets, template_imports=ahead)
    at = params_at[0]
    custom, _ = _clean(nb)
    later = [c.source for c in custom.cells[at + 1:] if c.cell_type == "code"]
    names = tuple(imported_modules(later)) if preload else ()
    cells = list(custom.cells[: at + 1])
    if names:
        cells.append(_injected(_PRELOAD_CELL.format(names=list(names)), ROLE_PRELOAD))
    cells.append(_injected(wait_cell_source(contract), ROLE_WAIT))
    cells.extend(custom.cells[at + 1:])
    custom.cells = cells
    return Variants(default, custom, has_widgets, names, ahead)


def is_wait_cell(cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` is the injected wait-for-request cell (it runs without a time limit)."""
    meta = cell.get("metadata", {}) or {}
    return (meta.get("nbapps", {}) or {}).get("role") == ROLE_WAIT
