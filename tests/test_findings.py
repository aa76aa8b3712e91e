"""Findings as people and tools read them: one cell numbering, tracebacks, schema violations."""
from __future__ import annotations

import json

import nbformat

from nbapps.findings import Finding
from nbapps.tracebacks import clean_evalue, describe, frames
from nbapps.validate import validate_notebook
from tests.nbfactory import make_notebook

# tracebacks as ipykernel 6/7 store them in an error output (colour codes included)
CHAINED = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
    "File \x1b[0;32m/srv/venv/lib/python3.11/site-packages/pandas/core/indexes/base.py:3805\x1b"
    "[0m, in \x1b[0;36mIndex.get_loc\x1b[0;34m(self, key)\x1b[0m\n   3804 try:\n\x1b[0;32m-> 3805"
    "\x1b[0m     \x1b[38;5;28;01mreturn\x1b[39;00m \x1b[38;5;28mself\x1b[39m\n",
    "\x1b[0;31mKeyError\x1b[0m: 'nope'",
    "\nThe above exception was the direct cause of the following exception:\n",
    "\x1b[0;31mKeyError\x1b[0m                                  Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[5], line 3\x1b[0m\n\x1b[1;32m      1\x1b[0m x \x1b[38;5;241m=\x1b[39m "
    "\x1b[38;5;241m1\x1b[39m\n\x1b[1;32m      2\x1b[0m df = pd.DataFrame()\n"
    "\x1b[0;32m----> 3\x1b[0m \x1b[43mpick\x1b[49m\x1b[43m(\x1b[49m\x1b[43mdf\x1b[49m\x1b[43m)"
    "\x1b[49m\n",
    "Cell \x1b[0;32mIn[4], line 2\x1b[0m, in \x1b[0;36mpick\x1b[0;34m(d)\x1b[0m\n"
    "\x1b[1;32m      1\x1b[0m \x1b[38;5;28;01mdef\x1b[39;00m pick(d):\n"
    "\x1b[0;32m----> 2\x1b[0m     \x1b[38;5;28;01mreturn\x1b[39;00m "
    "d[\x1b[38;5;124m'nope'\x1b[39m]\n",
    "File \x1b[0;32m/srv/venv/lib/python3.11/site-packages/pandas/core/frame.py:4102\x1b[0m, in "
    "\x1b[0;36mDataFrame.__getitem__\x1b[0;34m(self, key)\x1b[0m\n   4101 if is_single_key:\n"
    "\x1b[0;32m-> 4102\x1b[0m     indexer = self.columns.get_loc(key)\n",
    "\x1b[0;31mKeyError\x1b[0m: 'nope'",
]
SIMPLE = ["-----", "AssertionError      Traceback (most recent call last)",
          "Cell In[2], line 2\n      1 x = 1\n----> 2 assert x == 2, 'x is not 2'\n",
          "AssertionError: x is not 2"]
SYNTAX = ["  Cell In[2], line 2\n    x = (1,\n     ^\nSyntaxError: incomplete input\n"]


def test_finding_json_counts_cells_from_one_and_keeps_the_index_for_tools():
    finding = Finding("NBA070", "boom", cell=6, cell_line="assert False")
    data = finding.to_dict()
    assert (data["cell"], data["cell_index"], finding.cell_number) == (7, 6, 7)
    assert Finding.from_dict(data) == finding
    # whole-notebook findings have neither
    whole = Finding("NBA030", "no widget").to_dict()
    assert whole["cell"] is None and whole["cell_index"] is None
    # a stored dict from before cell_index existed had the 0-based index in `cell`
    assert Finding.from_dict({"code": "NBA070", "message": "m", "cell": 6}).cell == 6


def test_chained_traceback_gives_the_cell_line_and_the_last_frame():
    found = frames(CHAINED)
    assert [f.execution_count for f in found] == [5, 4, None]
    assert found[0].code == "pick(df)" and found[-1].file == "pandas/core/frame.py"
    assert describe(CHAINED, {5: 9, 4: 8}) == (
        "line 3: `pick(df)`; last frame: pandas/core/frame.py:4102, in DataFrame.__getitem__: "
        "`indexer = self.columns.get_loc(key)`")


def test_error_in_the_cell_itself_names_only_its_line():
    assert describe(SIMPLE) == "line 2: `assert x == 2, 'x is not 2'`"


def test_syntax_error_names_the_line_without_the_temporary_file():
    assert describe(SYNTAX) == "line 2: `x = (1,`"
    assert clean_evalue("SyntaxError", "incomplete input (1137177490.py, line 2)") == \
        "incomplete input"
    assert clean_evalue("ValueError", "bad (x.py, line 2)") == "bad (x.py, line 2)"


def test_unknown_traceback_shapes_give_no_detail():
    assert describe([]) == "" and describe(["KeyError: 'x'"]) == ""


def test_nba004_lists_each_schema_violation_with_its_cell_up_to_ten():
    nb = make_notebook(extra=[f"v{i} = {i}" for i in range(14)])
    data = json.loads(nbformat.writes(nb))
    for cell in data["cells"][2:16]:
        cell["execution_count"] = "not a number"
    report = validate_notebook(json.dumps(data).encode(), name="bad.ipynb")
    codes = [f.code for f in report.findings]
    assert codes == ["NBA004"] * 10
    assert [f.cell_number for f in report.findings] == list(range(3, 13))
    assert report.findings[0].cell_line == "v0 = 0"
    assert "execution_count" in report.findings[0].message
    assert report.findings[-1].message.endswith("(and 4 more violations)")


def test_single_schema_violation_reads_as_before():
    nb = make_notebook()
    data = json.loads(nbformat.writes(nb))
    data["metadata"]["kernelspec"]["name"] = 3
    [finding] = validate_notebook(json.dumps(data).encode(), name="one.ipynb").findings
    assert finding.code == "NBA004" and finding.cell is None
    assert "metadata.kernelspec.name" in finding.message
