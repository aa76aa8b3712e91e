"""Load a notebook and give the app's view of it: tags, ``metadata.nbapps`` and parameter contract.

:func:`load_notebook` either returns an :class:`AppNotebook` or raises
:class:`~nbapps.errors.NotebookError` with the code saying why the file is not a usable notebook
(NBA001 unreadable, NBA006 empty, NBA002 not JSON, NBA003 JSON but not a notebook, NBA004 schema
violation). The schema is checked explicitly because papermill runs notebooks that violate it.

Everything loading tolerates but had to ignore or repair becomes a :class:`~nbapps.findings.Finding`
in ``AppNotebook.findings``: an old format upgraded (NBA005), a ``metadata.nbapps`` field of the
wrong type (NBA033) or unknown (NBA034), an unusable parameters cell (NBA022) or constraint
(NBA024). The other rules live in :mod:`nbapps.validate`.
"""
from __future__ import annotations

import copy
import difflib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.validator import ValidationError, iter_validate, normalize

from .contract import ParameterContract, apply_constraints, read_parameters_cell
from .errors import NotebookError
from .findings import Finding, cell_finding, first_line

log = logging.getLogger("nbapps.notebook")

PARAMETERS_TAG = "parameters"
WIDGET_TAG = "widget"
INJECTED_TAG = "injected-parameters"

#: ``metadata.nbapps`` fields: name -> (python types accepted, description for messages).
_META_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "title": ((str,), "a string"),
    "description": ((str,), "a string"),
    "tags": ((list,), "a list of strings"),
    "files": ((list,), "a list of paths (strings)"),
    "test_parameters": ((list,), "a list of mappings of parameter name to value"),
    "timeout": ((int, float), "a number of seconds above 0"),
    "thumbnail": ((str,), "a path (string)"),
    "parameters": ((dict,), "a mapping of parameter name to {choices, min, max}"),
    "author": ((str,), "a string (shown in the gallery; default: the publishing account)"),
    "slug": ((str,), "the app's name in the gallery (recorded by the first publish)"),
    "outputs": ((list,), "a list of file names the notebook writes (kept by runs)"),
    "schedules": ((list,), "a list of schedules {name, cron, timezone, parameters}"),
    "variants": ((list,), "a list of named parameter sets {name, parameters}"),
    "snapshot": ((bool,), "true or false (true: open on the latest report, no kernel)"),
}


@dataclass
class AppMetadata:
    """``metadata.nbapps`` with every field of the right type (wrong ones are left at default)."""

    title: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    test_parameters: list[dict[str, Any]] = field(default_factory=list)
    timeout: float | None = None
    thumbnail: str | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    author: str = ""
    slug: str = ""
    outputs: list[str] = field(default_factory=list)
    #: raw entries; checked by :func:`nbapps.schedules.parse_schedules` (NBA085-NBA089)
    schedules: list[Any] = field(default_factory=list)
    #: raw entries; checked by :func:`nbapps.variants.parse_variants` (NBA090-NBA094)
    variants: list[Any] = field(default_factory=list)
    snapshot: bool = False

    @classmethod
    def from_notebook(cls, nb: nbformat.NotebookNode) -> tuple[AppMetadata, list[Finding]]:
        """Read ``nb.metadata.nbapps``: a field of the wrong type is NBA033, unknown NBA034."""
        raw = nb.metadata.get("nbapps")
        meta = cls()
        if raw is None:
            return meta, []
        if not isinstance(raw, dict):
            return meta, [Finding("NBA033", "`metadata.nbapps` must be a mapping, found a "
                                  f"{_json_type(raw)}")]
        findings: list[Finding] = []
        for key, value in raw.items():
            where = f"metadata.nbapps.{key}"
            if key not in _META_FIELDS:
                close = difflib.get_close_matches(key, list(_META_FIELDS), n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                findings.append(Finding("NBA034", f"unknown field `{where}`{hint}; known fields: "
                                        + ", ".join(_META_FIELDS)))
                continue
            if value is None and key in ("timeout", "thumbnail"):
                continue
            kinds, wanted = _META_FIELDS[key]
            problem = _field_problem(key, value, kinds)
            if problem is not None:
                findings.append(Finding("NBA033", f"`{where}` must be {wanted}; {problem}"))
                continue
            if key == "timeout":
                value = float(value)
            elif key in ("tags", "files", "test_parameters", "parameters", "outputs",
                         "schedules", "variants"):
                value = copy.deepcopy(_plain(value))
            setattr(meta, key, value)
        return meta, findings

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(getattr(self, k)) for k in _META_FIELDS}


def _json_type(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _plain(value: Any) -> Any:
    """NotebookNode (attribute dicts) to plain dicts, recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _field_problem(key: str, value: Any, kinds: tuple[type, ...]) -> str | None:
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        return f"found a {_json_type(value)}"
    if key in ("tags", "files", "outputs"):
        bad = [v for v in value if not isinstance(v, str)]
        if bad:
            return f"item {bad[0]!r} is a {_json_type(bad[0])}"
    if key == "test_parameters":
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                return f"item {i} is a {_json_type(item)}"
    if key == "parameters":
        bad = [k for k, v in value.items() if not isinstance(v, dict)]
        if bad:
            return f"`{bad[0]}` is a {_json_type(value[bad[0]])}, not a mapping"
    if key == "timeout" and not value > 0:
        return f"found {value!r}"
    return None


@dataclass
class AppNotebook:
    """A notebook as an app: the upgraded notebook plus what nbapps reads from it."""

    nb: nbformat.NotebookNode
    path: Path | None
    source_version: tuple[int, int]
    meta: AppMetadata
    parameters_cells: list[int]
    widget_cells: list[int]
    contract: ParameterContract
    findings: list[Finding]
    kernel_name: str | None
    name: str = ""

    @property
    def folder(self) -> Path | None:
        """The folder the notebook's relative paths (files, thumbnail) are resolved against."""
        return self.path.parent if self.path is not None else None

    @property
    def language(self) -> str | None:
        info = self.nb.metadata.get("language_info") or {}
        spec = self.nb.metadata.get("kernelspec") or {}
        return spec.get("language") or info.get("name")

    def cells_tagged(self, tag: str) -> list[int]:
        return [i for i, cell in enumerate(self.nb.cells) if tag in _tags(cell)]


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _fail(code: str, message: str, name: str) -> NotebookError:
    return NotebookError(f"{name}: {message}", code=code, details={"path": name})


def _read(source: str | Path | bytes, name: str) -> tuple[bytes, Path | None, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None, name
    path = Path(source)
    shown = str(source)
    try:
        return path.read_bytes(), path, shown
    except FileNotFoundError:
        raise _fail("NBA001", "no such file", shown) from None
    except IsADirectoryError:
        raise _fail("NBA001", "is a folder, not a notebook file", shown) from None
    except PermissionError:
        raise _fail("NBA001", "permission denied", shown) from None
    except OSError as exc:
        raise _fail("NBA001", f"cannot be read ({exc.strerror or exc})", shown) from None


def _schema_message(error: ValidationError) -> tuple[str, int | None]:
    """A short ``where: what`` message from nbformat's validation error, and the cell index."""
    path = list(getattr(error, "absolute_path", None) or getattr(error, "relative_path", []) or [])
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    what = str(getattr(error, "message", error)).splitlines()[0] if str(error) else "invalid"
    instance = getattr(error, "instance", None)
    if "is not valid under any of the given schemas" in what:
        if isinstance(instance, dict) and "cell_type" in instance:
            what = f"unknown or invalid cell_type {instance.get('cell_type')!r}"
        elif isinstance(instance, dict) and "output_type" in instance:
            what = f"unknown or invalid output_type {instance.get('output_type')!r}"
        else:
            what = "value has the wrong type or shape"
    if len(what) > 160:
        what = what[:159] + "…"
    cell = path[1] if len(path) > 1 and path[0] == "cells" and isinstance(path[1], int) else None
    return (f"{where}: {what}" if where else what), cell


#: schema violations listed in an NBA004 error (the rest are counted)
MAX_SCHEMA_VIOLATIONS = 10


def _validate_schema(data: dict[str, Any], name: str) -> None:
    """NotebookError NBA004 listing up to :data:`MAX_SCHEMA_VIOLATIONS` violations; each is
    also in ``details["violations"]`` as ``{"message", "cell", "cell_line"}`` (``cell``: the
    0-based index or None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # normalize works on a deep copy: it adds missing cell ids and repairs duplicates,
            # which JupyterLab tolerates; what is left is a real schema violation.
            _changes, normalized = normalize(data)
        except Exception:  # noqa: BLE001 - a broken structure: the schema says what is wrong
            normalized = data
        found: list[tuple[str, int | None]] = []
        total = 0
        for error in iter_validate(normalized):
            total += 1
            if len(found) < MAX_SCHEMA_VIOLATIONS:
                item = _schema_message(error)
                if item not in found:
                    found.append(item)
                else:
                    total -= 1
    if not found:
        return
    if len(found) == 1 and total == 1:
        message = f"violates the nbformat schema at {found[0][0]}"
    else:
        listed = "; ".join(f"{i}) {m}" for i, (m, _c) in enumerate(found, 1))
        more = f" (and {total - len(found)} more)" if total > len(found) else ""
        message = f"violates the nbformat schema in {total} places: {listed}{more}"
    error = _fail("NBA004", message, name)
    error.details = {"path": name, "total": total, "violations": [
        {"message": m, "cell": c, "cell_line": _cell_first_line(normalized, c)}
        for m, c in found]}
    raise error


def _cell_first_line(data: Any, index: int | None) -> str | None:
    """First line of cell ``index`` of a raw (maybe broken) notebook dict, if it has one."""
    try:
        source = data["cells"][index]["source"] if index is not None else None
    except (KeyError, IndexError, TypeError):
        return None
    return first_line(source) or None if isinstance(source, (str, list)) else None


def _upgrade_minor(nb: nbformat.NotebookNode) -> None:
    """Bring a v4.x notebook to the current minor version with deterministic cell ids.

    Missing ids (notebooks before 4.5, or converted from v3) and duplicated ids are replaced by
    ``cell-N`` so that loading the same file twice gives the same notebook.
    """
    present = [c.get("id") for c in nb.cells]
    used = {i for i in present if isinstance(i, str) and i}
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen:
            cell_id = f"cell-{index}"
            while cell_id in used:
                cell_id += "-x"
            used.add(cell_id)
            cell["id"] = cell_id
        seen.add(cell_id)
    nb.nbformat = nbformat.current_nbformat
    nb.nbformat_minor = max(nb.get("nbformat_minor", 0), nbformat.current_nbformat_minor)


def _parse(data: bytes, name: str) -> tuple[nbformat.NotebookNode, tuple[int, int], list[Finding]]:
    if not data.strip():
        raise _fail("NBA006", "the file is empty", name)
    if b"\x00" in data[:4096]:
        raise _fail("NBA002", "a binary file, not a notebook (JSON text)", name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail("NBA002", f"not a text file (invalid UTF-8 at byte {exc.start})",
                    name) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail("NBA002", f"not valid JSON ({exc.msg} at line {exc.lineno} column "
                    f"{exc.colno})", name) from None
    except (ValueError, RecursionError):
        raise _fail("NBA002", "not valid JSON (too deeply nested or malformed)", name) from None
    if not isinstance(obj, dict):
        raise _fail("NBA003", f"the JSON is a {_json_type(obj)}, not a notebook object", name)
    missing = [k for k in ("nbformat", "metadata") if k not in obj]
    if "cells" not in obj and "worksheets" not in obj:
        missing.insert(0, "cells")
    if "nbformat" in missing or len(missing) >= 2:
        raise _fail("NBA003", "JSON without the notebook keys " + ", ".join(missing), name)
    major, minor = obj.get("nbformat"), obj.get("nbformat_minor", 0)
    for key, value in (("nbformat", major), ("nbformat_minor", minor)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail("NBA004", f"violates the nbformat schema at {key}: {value!r} is not a "
                        "version number", name)
    if major not in nbformat.versions:
        raise _fail("NBA004", f"nbformat {major} is not supported (versions "
                    f"{min(nbformat.versions)}–{max(nbformat.versions)} are)", name)
    findings: list[Finding] = []
    if major >= 3:
        _validate_schema(obj, name)
    try:
        nb = nbformat.versions[major].to_notebook_json(obj, minor=minor)
        if major < nbformat.current_nbformat:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nb = nbformat.convert(nb, nbformat.current_nbformat)
            for cell in nb.cells:  # random ids from the converter; deterministic ones below
                cell.pop("id", None)
            findings.append(Finding("NBA005", f"nbformat {major}.{minor} notebook upgraded to "
                                    f"{nbformat.current_nbformat}.{nbformat.current_nbformat_minor}"
                                    " for checking"))
    except Exception as exc:  # noqa: BLE001 - nbformat's converters raise many kinds on bad input
        log.debug("conversion of %s failed", name, exc_info=True)
        raise _fail("NBA004", f"nbformat {major}.{minor} notebook cannot be upgraded "
                    f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})",
                    name) from None
    _upgrade_minor(nb)
    if major < nbformat.current_nbformat:
        _validate_schema(nb, name)
    return nb, (major, minor), findings


def app_view(nb: nbformat.NotebookNode, *, path: Path | None = None, name: str = "",
             source_version: tuple[int, int] | None = None,
             findings: list[Finding] | None = None) -> AppNotebook:
    """The app view of an already-loaded current-v4 notebook (tags, metadata, contract)."""
    findings = list(findings or [])
    meta, meta_findings = AppMetadata.from_notebook(nb)
    findings.extend(meta_findings)
    parameters_cells = [i for i, c in enumerate(nb.cells)
                        if c.get("cell_type") == "code" and PARAMETERS_TAG in _tags(c)]
    widget_cells = [i for i, c in enumerate(nb.cells) if WIDGET_TAG in _tags(c)]
    contract = ParameterContract()
    if parameters_cells:
        index = parameters_cells[0]  # papermill injects after the first one
        params, problems = read_parameters_cell(nb.cells[index].source)
        if problems:
            shown = "; ".join(str(p) for p in problems[:5])
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            findings.append(cell_finding("NBA022", shown + more, nb, index))
        params, constraint_problems = apply_constraints(params, meta.parameters)
        findings.extend(Finding("NBA024", p) for p in constraint_problems)
        contract = ParameterContract(tuple(params))
    elif meta.parameters:
        findings.append(Finding("NBA024", "`metadata.nbapps.parameters` constrains "
                                + ", ".join(meta.parameters) + " but the notebook has no "
                                "`parameters` cell"))
    spec = nb.metadata.get("kernelspec")
    kernel_name = spec.get("name") if isinstance(spec, dict) else None
    return AppNotebook(
        nb=nb, path=path, source_version=source_version or (nb.nbformat, nb.nbformat_minor),
        meta=meta, parameters_cells=parameters_cells, widget_cells=widget_cells,
        contract=contract, findings=findings,
        kernel_name=kernel_name if isinstance(kernel_name, str) and kernel_name else None,
        name=name or (str(path) if path else "<notebook>"),
    )


def load_notebook(source: str | Path | bytes, *, name: str = "<bytes>") -> AppNotebook:
    """Read a notebook file (a ``str``/``Path`` is a path; ``bytes`` are the file's content).

    The notebook is upgraded to the current nbformat (4.5+) in memory; the file is never
    modified. Raises :class:`~nbapps.errors.NotebookError` (NBA001/002/003/004/006) when the
    input is not a usable notebook.
    """
    data, path, shown = _read(source, name)
    nb, version, findings = _parse(data, shown)
    return app_view(nb, path=path, name=shown, source_version=version, findings=findings)
