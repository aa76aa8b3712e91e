"""Loading notebooks: the app view, and every way a file can fail to be a notebook."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from nbapps.errors import NotebookError
from nbapps.notebook import AppMetadata, load_notebook
from tests.nbfactory import make_notebook, write_notebook


def nb_json(**kw) -> dict:
    return json.loads(nbformat.writes(make_notebook(**kw)))


def codes(app) -> list[str]:
    return [f.code for f in app.findings]


def test_app_view_of_a_valid_notebook(app_notebook_path: Path):
    app = load_notebook(app_notebook_path)
    assert app.path == app_notebook_path and app.folder == app_notebook_path.parent
    assert app.findings == []
    assert app.source_version == (4, nbformat.current_nbformat_minor)
    assert app.parameters_cells == [1] and app.widget_cells == [2]
    assert app.kernel_name == "python3" and app.language == "python"
    assert app.meta.title == "Test app" and app.meta.tags == ["test"]
    assert app.contract.names() == ["n", "label"]
    assert app.contract.get("n").help == "how many"


def test_loading_never_modifies_the_file(tmp_path: Path):
    nb = nb_json()
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        cell.pop("id")
    path = tmp_path / "old.ipynb"
    raw = json.dumps(nb).encode()
    path.write_bytes(raw)
    first, second = load_notebook(path), load_notebook(path)
    assert path.read_bytes() == raw
    assert first.nb.nbformat_minor == nbformat.current_nbformat_minor
    ids = [c.id for c in first.nb.cells]
    assert ids == [c.id for c in second.nb.cells] and len(set(ids)) == len(ids)
    assert first.source_version == (4, 4)
    assert codes(first) == []  # a minor upgrade is silent: 4.4 is common and harmless
    nbformat.validate(first.nb)


def test_bytes_input_has_no_path():
    app = load_notebook(nbformat.writes(make_notebook()).encode(), name="upload.ipynb")
    assert app.path is None and app.folder is None and app.name == "upload.ipynb"


@pytest.mark.parametrize("data, code, fragment", [
    (b"", "NBA006", "empty"),
    (b"   \n\t\n", "NBA006", "empty"),
    (bytes(range(256)) * 4, "NBA002", "binary file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NBA002", "binary file"),
    (b'{"a": "\xff\xfe"}', "NBA002", "invalid UTF-8"),
    (b'{"cells": [', "NBA002", "not valid JSON"),
    (b"nonsense", "NBA002", "not valid JSON"),
    (b"[" * 200_000, "NBA002", "not valid JSON"),
    (b"[1, 2, 3]", "NBA003", "list"),
    (b'"a notebook"', "NBA003", "string"),
    (b'{"name": "package.json", "version": "1.0"}', "NBA003", "notebook keys"),
    (b'{"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}', "NBA004",
     "nbformat 5 is not supported"),
    (b'{"nbformat": "4", "nbformat_minor": 5, "cells": [], "metadata": {}}', "NBA004",
     "not a version number"),
])
def test_unusable_input(data: bytes, code: str, fragment: str):
    with pytest.raises(NotebookError) as info:
        load_notebook(data, name="x.ipynb")
    assert info.value.code == code
    assert fragment in info.value.message
    assert info.value.message.startswith("x.ipynb: ")


@pytest.mark.parametrize("breakage, where", [
    (lambda nb: nb["cells"][1].pop("outputs"), "cells[1]: 'outputs' is a required property"),
    (lambda nb: nb["cells"][1].__setitem__("outputs", "none"), "cells[1].outputs"),
    (lambda nb: nb["cells"][1].__setitem__("source", 42), "cells[1].source"),
    (lambda nb: nb["cells"][0].__setitem__("cell_type", "slide"), "cell_type 'slide'"),
    (lambda nb: nb.__setitem__("cells", {}), "cells: {} is not of type 'array'"),
    (lambda nb: nb["metadata"].__setitem__("kernelspec", {"name": "python3"}),
     "metadata.kernelspec: 'display_name' is a required property"),
    (lambda nb: nb.pop("cells"), "'cells' is a required property"),
])
def test_schema_violations_name_the_field(breakage, where: str):
    nb = nb_json()
    breakage(nb)
    with pytest.raises(NotebookError) as info:
        load_notebook(json.dumps(nb).encode())
    assert info.value.code == "NBA004"
    assert where in info.value.message
    assert len(info.value.message) < 300


def test_schema_error_for_a_huge_instance_stays_short():
    nb = nb_json()
    nb["cells"][0]["cell_type"] = "weird"
    nb["cells"][0]["source"] = "x" * 1_000_000
    with pytest.raises(NotebookError) as info:
        load_notebook(json.dumps(nb).encode())
    assert info.value.code == "NBA004" and len(info.value.message) < 300


def test_unreadable_paths(tmp_path: Path):
    for path, fragment in ((tmp_path / "missing.ipynb", "no such file"),
                           (tmp_path, "is a folder")):
        with pytest.raises(NotebookError) as info:
            load_notebook(path)
        assert info.value.code == "NBA001" and fragment in info.value.message
    if os.geteuid() != 0:  # root reads everything
        locked = tmp_path / "locked.ipynb"
        locked.write_text("{}")
        locked.chmod(0)
        with pytest.raises(NotebookError) as info:
            load_notebook(locked)
        assert info.value.code == "NBA001"


def test_nbformat3_is_upgraded_with_a_warning_and_still_read():
    v3 = nbformat.writes(make_notebook(), version=3)
    assert json.loads(v3)["nbformat"] == 3
    app = load_notebook(v3.encode())
    assert codes(app) == ["NBA005"]
    assert not app.findings[0].is_error
    assert app.source_version == (3, 0)
    assert app.nb.nbformat == 4 and app.nb.nbformat_minor == nbformat.current_nbformat_minor
    assert app.contract.names() == ["n", "label"]
    assert app.widget_cells == [2] and app.kernel_name == "python3"
    nbformat.validate(app.nb)
    assert [c.id for c in app.nb.cells] == [c.id for c in load_notebook(v3.encode()).nb.cells]


def test_invalid_nbformat3_is_a_schema_violation():
    v3 = json.loads(nbformat.writes(make_notebook(), version=3))
    v3["worksheets"][0]["cells"][1]["outputs"] = "x"
    with pytest.raises(NotebookError) as info:
        load_notebook(json.dumps(v3).encode())
    assert info.value.code == "NBA004"


def test_duplicate_cell_ids_are_repaired():
    nb = nb_json()
    nb["cells"][1]["id"] = nb["cells"][0]["id"]
    app = load_notebook(json.dumps(nb).encode())
    ids = [c.id for c in app.nb.cells]
    assert len(set(ids)) == len(ids)


def test_metadata_fields_of_the_wrong_type():
    nb = make_notebook(meta={"title": 5, "tags": "finance", "files": ["a.csv", 3],
                             "test_parameters": {"n": 1}, "timeout": -1, "thumbnail": ["x"],
                             "parameters": {"n": 3}})
    app = load_notebook(nbformat.writes(nb).encode())
    messages = {f.message.split("`")[1]: f.message for f in app.findings}
    assert codes(app) == ["NBA033"] * 7
    for key in ("title", "tags", "files", "test_parameters", "timeout", "thumbnail",
                "parameters"):
        assert f"metadata.nbapps.{key}" in messages, key
    assert app.meta == AppMetadata(description="An app made by a test.")


def test_metadata_must_be_a_mapping():
    nb = make_notebook()
    nb.metadata["nbapps"] = ["title"]
    app = load_notebook(nbformat.writes(nb).encode())
    assert codes(app) == ["NBA033"] and "must be a mapping" in app.findings[0].message


def test_unknown_metadata_field_suggests_the_right_name():
    app = load_notebook(nbformat.writes(make_notebook(meta={"test_paramters": []})).encode())
    assert codes(app) == ["NBA034"]
    assert "did you mean `test_parameters`" in app.findings[0].message
    assert not app.findings[0].is_error


def test_good_metadata_is_read():
    meta = {"files": ["data/a.csv"], "test_parameters": [{"n": 5}], "timeout": 30,
            "thumbnail": "thumb.png", "parameters": {"n": {"min": 0, "max": 10}}}
    app = load_notebook(nbformat.writes(make_notebook(meta=meta)).encode())
    assert app.findings == []
    assert app.meta.timeout == 30.0 and app.meta.files == ["data/a.csv"]
    assert app.meta.test_parameters == [{"n": 5}]
    assert app.contract.get("n").max == 10


def test_parameters_cell_problems_and_bad_constraints_are_findings():
    nb = make_notebook(params="n = 3\nm = compute()\n",
                       meta={"parameters": {"n": {"min": 5}, "q": {"max": 1}}})
    app = load_notebook(nbformat.writes(nb).encode())
    assert codes(app) == ["NBA022", "NBA024", "NBA024"]
    assert app.findings[0].cell == 1 and "line 2" in app.findings[0].message
    assert app.findings[0].cell_line == "n = 3"
    assert app.contract.names() == ["n"] and app.contract.get("n").min is None


def test_constraints_without_parameters_cell():
    app = load_notebook(nbformat.writes(make_notebook(
        params=None, meta={"parameters": {"n": {"min": 1}}})).encode())
    assert codes(app) == ["NBA024"] and len(app.contract) == 0


def test_only_code_cells_count_as_parameters_and_first_one_wins():
    nb = make_notebook(extra=[new_code_cell("k = 1", metadata={"tags": ["parameters"]})])
    app = load_notebook(nbformat.writes(nb).encode())
    assert app.parameters_cells == [1, 2] and app.contract.names() == ["n", "label"]


def test_load_from_written_file_with_bom(tmp_path: Path):
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + nbformat.writes(make_notebook()).encode())
    assert load_notebook(path).contract.names() == ["n", "label"]
    write_notebook(make_notebook(), tmp_path / "plain.ipynb")
    assert load_notebook(str(tmp_path / "plain.ipynb")).findings == []


def test_author_is_a_known_metadata_field():
    """`metadata.nbapps.author` is documented (README) and read by the bundle manifest."""
    from nbapps.notebook import load_notebook
    from tests.nbfactory import make_notebook

    nb = make_notebook(meta={"author": "Ana Lyst"})
    app = load_notebook(nbformat_bytes(nb))
    assert app.meta.author == "Ana Lyst"
    assert not [f for f in app.findings if f.code in ("NBA033", "NBA034")]


def nbformat_bytes(nb) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode()
