"""The parameter contract: reading the parameters cell, constraints, checking and coercing."""
from __future__ import annotations

import json

import pytest
from nbformat import NotebookNode
from papermill.translators import PythonTranslator

from nbapps.contract import (
    Parameter,
    ParameterContract,
    apply_constraints,
    read_parameters_cell,
)
from nbapps.errors import ParameterError

CELL = '''\
# inputs of the app
region = "EU"  # sales region
year = 2024  # first year
rate: float = 1  # growth rate
scale = 2.5
show = True  # draw the chart
regions = ["EU", "US"]  # markets
weights = {
    "a": 1,  # inner comment
    "b": 2,
}  # weights by key
limit = None  # type: int  optional cap
count = -3
'''


def contract() -> ParameterContract:
    params, problems = read_parameters_cell(CELL)
    assert problems == []
    return ParameterContract(tuple(params))


def test_reads_names_types_defaults_and_help():
    c = contract()
    assert c.names() == ["region", "year", "rate", "scale", "show", "regions", "weights",
                         "limit", "count"]
    got = {p.name: (p.type, p.default, p.help) for p in c.parameters}
    assert got == {
        "region": ("str", "EU", "sales region"),
        "year": ("int", 2024, "first year"),
        "rate": ("float", 1, "growth rate"),
        "scale": ("float", 2.5, ""),
        "show": ("bool", True, "draw the chart"),
        "regions": ("list", ["EU", "US"], "markets"),
        "weights": ("dict", {"a": 1, "b": 2}, "weights by key"),
        "limit": ("int", None, "optional cap"),
        "count": ("int", -3, ""),
    }


def test_agrees_with_papermill_on_an_ordinary_cell():
    ours = {p.name: p for p in contract().parameters}
    theirs = PythonTranslator.inspect(NotebookNode(source=CELL))
    assert [p.name for p in theirs] == list(ours)
    for p in theirs:
        assert ours[p.name].help == p.help
        assert eval(p.default) == ours[p.name].default  # noqa: S307 - papermill's source text
        if p.inferred_type_name != "None":
            assert ours[p.name].type == p.inferred_type_name


def test_reads_an_equals_sign_inside_a_string_which_papermill_skips():
    params, problems = read_parameters_cell('sep = "a=b"  # separator\n')
    assert problems == []
    assert params == [Parameter("sep", "str", "a=b", "separator")]


@pytest.mark.parametrize("source, fragment", [
    ("x = compute()\n", "not a literal"),
    ("import math\n", "not an assignment"),
    ("a, b = 1, 2\n", "one name per line"),
    ("a = b = 1\n", "one name per line"),
    ("%matplotlib inline\nx = 1\n", "magic"),
    ("x = (1, 2)\n", "tuple is not allowed"),
    ("x = {1: 'a'}\n", "dict keys must be strings"),
    ("x = 1\nx = 2\n", "assigned twice"),
    ("x: int = 'a'\n", "declared `int`"),
    ("x: int\n", "needs a simple name and a default"),
    ("x = 1 +\n", "not valid Python"),
    ("x = f'{y}'\n", "not a literal"),
])
def test_cell_problems_name_the_line(source, fragment):
    params, problems = read_parameters_cell(source)
    assert problems, source
    assert fragment in str(problems[0])
    assert str(problems[0]).startswith("line ")


def test_good_lines_survive_a_bad_one():
    params, problems = read_parameters_cell("a = 1\nb = len('x')\nc = 'z'\n")
    assert [p.name for p in params] == ["a", "c"]
    assert [p.line for p in problems] == [2]


def test_problems_unknown_type_and_range():
    c = contract()
    assert c.problems({"region": "US", "year": 2020}) == []
    probs = c.problems({"nope": 1, "year": "2020", "show": 1, "rate": 2, "limit": "x"})
    codes = [code for code, _ in probs]
    assert codes == ["NBA101", "NBA102", "NBA102"]
    assert "parameters: region, year" in probs[0][1]
    assert "expects int" in probs[1][1]


def test_bool_is_not_an_int_and_int_is_a_float():
    c = contract()
    assert c.problems({"year": True}) and c.problems({"show": 0})
    assert c.problems({"scale": 3}) == []
    assert c.check({"scale": 3}) == {"scale": 3.0}
    assert isinstance(c.check({"scale": 3})["scale"], float)


def test_none_default_accepts_anything():
    c = contract()
    for value in (5, "x", [1], None, {"a": 1}):
        assert c.problems({"limit": value}) == []


def test_check_raises_with_every_problem():
    with pytest.raises(ParameterError) as info:
        contract().check({"bogus": 1, "year": "x"})
    err = info.value
    assert err.code == "NBA101" and err.exit_code == 2
    assert [d["code"] for d in err.details] == ["NBA101", "NBA102"]
    assert [d["name"] for d in err.details] == ["bogus", "year"]
    assert "bogus" in err.message and "year" in err.message


def test_constraints_narrow_and_are_checked():
    params, _ = read_parameters_cell(CELL)
    params, problems = apply_constraints(params, {
        "region": {"choices": ["EU", "US", "APAC"]},
        "year": {"min": 2000, "max": 2030},
    })
    assert problems == []
    c = ParameterContract(tuple(params))
    assert c.get("region").choices == ("EU", "US", "APAC")
    assert c.problems({"region": "APAC", "year": 2030}) == []
    probs = c.problems({"region": "XX", "year": 1999})
    assert [code for code, _ in probs] == ["NBA103", "NBA103"]
    assert "allowed: 'EU', 'US', 'APAC'" in probs[0][1]
    assert "minimum is 2000" in probs[1][1]


@pytest.mark.parametrize("constraints, fragment", [
    ({"nope": {"min": 1}}, "`nope` is not a parameter"),
    ({"year": {"min": 2025}}, "default 2024 is not allowed"),
    ({"year": {"choices": ["a"]}}, "'a' is not a int"),
    ({"year": {"choices": []}}, "non-empty list"),
    ({"region": {"min": 1}}, "only numeric parameters"),
    ({"year": {"min": "low"}}, "must be a number"),
    ({"year": {"min": 5000, "max": 1}}, "above max"),
    ({"year": {"step": 1}}, "unknown key(s) step"),
    ({"year": [1, 2]}, "must be a mapping"),
    ({"show": {"choices": [1, 0]}}, "1 is not a bool"),
])
def test_bad_constraints_are_reported_and_dropped(constraints, fragment):
    params, _ = read_parameters_cell(CELL)
    narrowed, problems = apply_constraints(params, constraints)
    assert problems and fragment in problems[0], problems
    assert narrowed == params


def test_coerce_text_values_by_type():
    params, _ = read_parameters_cell(CELL)
    params, _ = apply_constraints(params, {"year": {"max": 2100}})
    c = ParameterContract(tuple(params))
    got = c.coerce({
        "region": "US", "year": " 2030", "rate": "0.5", "show": "no",
        "regions": '["A", "B"]', "weights": "{'x': 1}", "limit": "7", "count": "-1",
    })
    assert got == {"region": "US", "year": 2030, "rate": 0.5, "show": False,
                   "regions": ["A", "B"], "weights": {"x": 1}, "limit": 7, "count": -1}
    assert c.coerce({"show": "YES"})["show"] is True
    assert c.coerce({"regions": ["EU", "APAC"]})["regions"] == ["EU", "APAC"]
    assert c.coerce({"regions": "EU"})["regions"] == ["EU"]
    assert c.coerce({"limit": "abc"})["limit"] == "abc"
    assert c.coerce({"year": ["2001"]})["year"] == 2001


def test_coerce_reports_every_problem():
    c = contract()
    with pytest.raises(ParameterError) as info:
        c.coerce({"year": "3.5", "show": "maybe", "rate": "nan", "weights": "[1]",
                  "region": ["a", "b"], "zzz": "1"})
    codes = {d["name"]: d["code"] for d in info.value.details}
    assert codes == {"year": "NBA102", "show": "NBA102", "rate": "NBA102", "weights": "NBA102",
                     "region": "NBA102", "zzz": "NBA101"}
    assert "6 parameter problems" in info.value.message


def test_coerce_then_range_check():
    params, _ = read_parameters_cell("n = 3\n")
    params, _ = apply_constraints(params, {"n": {"min": 0, "max": 10}})
    c = ParameterContract(tuple(params))
    with pytest.raises(ParameterError) as info:
        c.coerce({"n": "11"})
    assert info.value.code == "NBA103" and "maximum is 10" in info.value.message


def test_list_items_take_the_type_of_the_default_items():
    params, _ = read_parameters_cell("ids = [1, 2]\n")
    c = ParameterContract(tuple(params))
    assert c.coerce({"ids": ["3", "4"]}) == {"ids": [3, 4]}


def test_round_trip_through_json():
    params, _ = read_parameters_cell(CELL)
    params, _ = apply_constraints(params, {"region": {"choices": ["EU", "US"]},
                                           "year": {"min": 2000}})
    c = ParameterContract(tuple(params))
    data = json.loads(json.dumps(c.to_dict()))
    assert ParameterContract.from_dict(data) == c
    assert ParameterContract.from_dict({"parameters": data}) == c
    assert data[0] == {"name": "region", "type": "str", "default": "EU", "help": "sales region",
                       "choices": ["EU", "US"], "min": None, "max": None}


def test_empty_contract_refuses_every_name():
    c = ParameterContract()
    assert c.names() == [] and c.check({}) == {}
    with pytest.raises(ParameterError) as info:
        c.check({"x": 1})
    assert "takes no parameters" in info.value.message


def test_list_items_of_the_wrong_type_are_refused():
    params, _ = read_parameters_cell("ids = [1, 2]\n")
    with pytest.raises(ParameterError) as info:
        ParameterContract(tuple(params)).coerce({"ids": ["3", "x"]})
    assert info.value.code == "NBA102" and "integer" in info.value.message
