"""The demo gallery: every app is well formed, listed in gallery.yaml, validates clean, runs top to
bottom (nbval) and survives every control being moved (callbacks are where library drift hides:
they run only when a viewer touches a widget)."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from nbapps.execute import run_app
from nbapps.notebook import load_notebook
from nbapps.scaffold import check_name
from nbapps.validate import ValidationSettings, validate_notebook

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "gallery"
MAX_FOLDER_BYTES = 200 * 1024
CATEGORIES = {"sales", "finance", "data-quality", "operations", "marketing", "tools"}

APP_DIRS = sorted(p for p in GALLERY.iterdir() if p.is_dir() and not p.name.startswith("."))


def _notebook(folder: Path) -> Path:
    return folder / f"{folder.name}.ipynb"


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _listing() -> dict[str, Any]:
    return yaml.safe_load((GALLERY / "gallery.yaml").read_text("utf-8"))


def test_gallery_has_at_least_eight_apps():
    assert len(APP_DIRS) >= 8, [p.name for p in APP_DIRS]


def test_listing_matches_folders():
    listing = _listing()
    apps = listing["apps"]
    assert sorted(a["slug"] for a in apps) == [p.name for p in APP_DIRS]
    assert sorted(a["featured"] for a in apps) == list(range(1, len(apps) + 1))
    for entry in apps:
        assert entry["path"] == f"{entry['slug']}/{entry['slug']}.ipynb"
        assert (GALLERY / entry["path"]).is_file()
        assert entry["category"] in CATEGORIES, entry
        assert entry["review"]["decision"] == "approve", entry
        assert len(entry["review"]["comment"]) > 20, entry


@pytest.mark.parametrize("folder", APP_DIRS, ids=lambda p: p.name)
def test_app_follows_the_authoring_contract(folder: Path):
    check_name(folder.name)
    path = _notebook(folder)
    assert path.is_file(), f"{folder.name}: expected {path.name}"
    assert [p.name for p in folder.glob("*.ipynb")] == [path.name]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)

    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    params = [c for c in nb.cells if "parameters" in _tags(c)]
    assert len(params) == 1
    assert params[0].cell_type == "code"
    # plain literal assignments, each with help text
    for node, line in zip(ast.parse(params[0].source).body, params[0].source.splitlines(),
                          strict=True):
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), line
        assert isinstance(node.value.value, (int, float, str, bool)), line
        assert re.search(r"\S  # \S", line), f"no help comment: {line}"
    widget_code = [c for c in nb.cells if "widget" in _tags(c) and c.cell_type == "code"]
    assert widget_code, "no widget code cell"

    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "stored outputs"
            assert not re.search(r"^\s*[!%]{1,2}(?!matplotlib inline)", cell.source, re.M), (
                "shell escape or magic other than %matplotlib inline")

    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.language_info.name == "python"
    meta = nb.metadata.nbapps
    assert meta.title and meta.description.endswith(".") and meta.tags
    assert 1 <= len(meta.test_parameters) <= 2
    for name in meta.files:
        assert (folder / name).is_file(), f"declared file missing: {name}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    read = set(re.findall(r"""["']([\w./-]+\.(?:csv|json|xlsx|parquet|txt))["']""", code))
    assert read <= set(meta.files), f"files read but not declared: {read - set(meta.files)}"
    on_disk = {p.name for p in folder.iterdir() if p.is_file()} - {path.name}
    assert on_disk == set(meta.files), f"files shipped but not declared: {on_disk}"
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < MAX_FOLDER_BYTES, f"{folder.name} is {size} bytes"


@pytest.mark.parametrize("folder", APP_DIRS, ids=lambda p: p.name)
def test_app_validates_without_findings(folder: Path):
    report = validate_notebook(_notebook(folder), ValidationSettings(execute=False))
    assert not report.findings, [f"{f.code} {f.message}" for f in report.findings]


@pytest.mark.kernel
@pytest.mark.timeout(900)
def test_gallery_runs_under_nbval():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "gallery", "-p", "no:cacheprovider",
         "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=850,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout), proc.stdout[-2000:]


# Appended to a copy of each app: moves every control to its first and last option (or min and
# max) and back; an exception or warning raised in a callback is shown by Output.__exit__ via
# IPython's showtraceback, which records it in sys.last_value.
POKE = r'''
import datetime as _dt
import sys as _sys
import warnings as _warnings
from ipywidgets.widgets.widget import _instances as _widgets

_failures, _changes = [], 0
_CSV = b"id,amount,email\n1,2.5,a@b.org\n1,2.5,a@b.org\n2,x,bad\n"
_NOW = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc)


def _set(widget, attr, value, label):
    global _changes
    _sys.last_value = None
    try:
        setattr(widget, attr, value)
    except Exception as exc:
        _failures.append(f"{label}: {type(exc).__name__}: {exc}")
    _changes += 1
    if _sys.last_value is not None:
        _failures.append(f"{label}: {type(_sys.last_value).__name__}: {_sys.last_value}")


def _upload(name, content):
    return ({"name": name, "type": "text/csv", "size": len(content),
             "content": memoryview(content), "last_modified": _NOW},)


with _warnings.catch_warnings():
    _warnings.simplefilter("error")
    for _w in list(_widgets.values()):
        _kind = type(_w).__name__
        _label = f"{_kind} {getattr(_w, 'description', '')!r}"
        if _kind in ("Dropdown", "ToggleButtons", "RadioButtons"):
            _values = [v for _, v in _w._options_full]
            for _v in dict.fromkeys([_values[0], _values[-1], _w.value]):
                _set(_w, "value", _v, f"{_label}={_v!r}")
        elif _kind == "SelectMultiple":
            _orig = _w.value
            for _v in (_w.value[:1], (), _orig):
                _set(_w, "value", _v, f"{_label}={_v!r}")
        elif _kind in ("IntSlider", "FloatSlider", "BoundedIntText", "BoundedFloatText"):
            for _v in (_w.min, _w.max, _w.value):
                _set(_w, "value", _v, f"{_label}={_v!r}")
        elif _kind in ("IntText", "FloatText"):
            for _v in (0, _w.value * 3 + 1, _w.value):
                _set(_w, "value", _v, f"{_label}={_v!r}")
        elif _kind == "SelectionRangeSlider":
            _orig = _w.index
            for _v in ((0, 0), (0, len(_w.options) - 1), _orig):
                _set(_w, "index", _v, f"{_label} index={_v!r}")
        elif _kind in ("Checkbox", "ToggleButton"):
            for _v in (not _w.value, _w.value):
                _set(_w, "value", _v, f"{_label}={_v!r}")
        elif _kind == "Button":
            _sys.last_value = None
            _w.click()
            _changes += 1
            if _sys.last_value is not None:
                _failures.append(f"{_label} click: {_sys.last_value!r}")
        elif _kind == "FileUpload":
            _set(_w, "value", _upload("t.csv", _CSV), f"{_label} csv")
            _set(_w, "value", _upload("b.csv", b"\xff\xfe\x00\x01"), f"{_label} binary")
assert _changes, "no controls found"
assert not _failures, "\n".join(_failures)
print(f"{_changes} control changes")
'''


@pytest.mark.kernel
@pytest.mark.timeout(600)
@pytest.mark.parametrize("folder", APP_DIRS, ids=lambda p: p.name)
def test_every_control_can_be_moved(folder: Path):
    app = load_notebook(_notebook(folder))
    app.nb.cells.append(nbformat.v4.new_code_cell(POKE))
    result = run_app(app, {}, cell_timeout=300, total_timeout=500)
    assert result.ok, "\n".join(f"{f.code} {f.message}" for f in result.findings)
    printed = "".join(o.get("text", "") for o in result.nb.cells[-1].outputs)
    assert "control changes" in printed, printed
