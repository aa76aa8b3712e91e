"""Variants (issue 14 item 5): named parameter sets, checked against the contract at validation,
listed on the app page as links that open the app with their values."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbapps.contract import Parameter, ParameterContract
from nbapps.validate import ValidationSettings, validate_notebook
from nbapps.variants import MAX_VARIANTS, Variant, parse_variants, query_values, variant_key
from tests.nbfactory import make_notebook, write_notebook

PARAMS = ('region = "EU"  # sales region\nyear = 2024  # year\nrate = 0.5  # a rate\n'
          'detailed = False  # more rows\nitems = ["a", "b"]  # items\nlimit = None  # cap\n')
CONSTRAINTS = {"region": {"choices": ["EU", "US", "APAC"]}, "rate": {"min": 0, "max": 1}}


def _codes(tmp_path: Path, variants: Any) -> list[tuple[str, str]]:
    nb = make_notebook(params=PARAMS, meta={"parameters": CONSTRAINTS, "variants": variants})
    report = validate_notebook(write_notebook(nb, tmp_path / "app.ipynb"),
                               ValidationSettings(execute=False))
    return [(f.code, f.message) for f in report.findings if f.code.startswith("NBA09")
            or f.code in ("NBA033", "NBA034")]


def test_valid_variants_pass_and_get_stable_keys(tmp_path: Path) -> None:
    variants = [{"name": "EU 2024", "parameters": {"region": "EU", "year": 2024}},
                {"name": "  US  — 2023 ", "parameters": {"region": "US", "year": 2023,
                                                          "rate": 1}},
                {"name": "Defaults"}]
    assert _codes(tmp_path, variants) == []
    nb = make_notebook(params=PARAMS, meta={"parameters": CONSTRAINTS})
    from nbapps.notebook import load_notebook

    app = load_notebook(nbformat_bytes(nb), name="app.ipynb")
    parsed, findings = parse_variants(variants, app.contract)
    assert findings == []
    assert [(v.name, v.key) for v in parsed] == [
        ("EU 2024", "eu-2024"), ("US — 2023", "us-2023"), ("Defaults", "defaults")]
    assert parsed[1].parameters["rate"] == 1.0 and isinstance(parsed[1].parameters["rate"], float)
    assert parsed[2].parameters == {}
    assert variant_key("EU 2024") == "eu-2024"  # the same key every time


def nbformat_bytes(nb: Any) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode()


@pytest.mark.parametrize("variants, code, words", [
    ([{"name": "x", "parameters": {"country": "FR"}}], "NBA091", "unknown parameter 'country'"),
    ([{"name": "x", "parameters": {"year": "2024"}}], "NBA092", "expects int"),
    ([{"name": "x", "parameters": {"region": "LATAM"}}], "NBA092", "allowed"),
    ([{"name": "x", "parameters": {"rate": 2}}], "NBA092", "maximum"),
    ([{"name": "EU", "parameters": {}}, {"name": "EU", "parameters": {}}], "NBA093", "same name"),
    ([{"name": "EU 2024"}, {"name": "eu-2024!"}], "NBA093", "link key 'eu-2024'"),
    ([{"name": f"v{i}"} for i in range(MAX_VARIANTS + 1)], "NBA094", "at most 20"),
    ([{"parameters": {}}], "NBA090", "`name`"),
    ([{"name": "x", "parameters": [1]}], "NBA090", "`parameters` must be a mapping"),
    ([{"name": "x", "params": {}}], "NBA090", "unknown field"),
    (["EU"], "NBA090", "must be a mapping"),
])
def test_bad_variants_are_findings(tmp_path: Path, variants: Any, code: str, words: str) -> None:
    found = _codes(tmp_path, variants)
    assert [c for c, _ in found] == [code], found
    assert words in found[0][1] and (code == "NBA094" or "variant" in found[0][1]), found


def test_variants_not_a_list_is_a_type_finding(tmp_path: Path) -> None:
    found = _codes(tmp_path, {"EU": {"region": "EU"}})
    assert [c for c, _ in found] == ["NBA033"] and "variants" in found[0][1]


def test_query_values_read_back_to_the_variant_values() -> None:
    """What a variant link puts in the URL is read back by the contract (as the app frame and
    the runner do) to exactly the variant's values, for every parameter type."""
    contract = ParameterContract((
        Parameter("region", "str", "EU"), Parameter("year", "int", 2024),
        Parameter("rate", "float", 0.5), Parameter("detailed", "bool", False),
        Parameter("items", "list", ["a"]), Parameter("opts", "dict", {"k": 1}),
        Parameter("limit", "none", None), Parameter("label", "none", None),
        Parameter("code", "str", "x")))
    values = {"region": "US", "year": 2023, "rate": 0.25, "detailed": True,
              "items": ["x", "y z"], "opts": {"a": [1, 2]}, "limit": 10, "label": "42",
              "code": "[not a list]"}
    texts = query_values(Variant("v", "v", values), contract)
    assert texts["region"] == "US" and texts["code"] == "[not a list]"
    assert contract.coerce(texts) == values
    assert type(contract.coerce(texts)["label"]) is str


# -- the app page, with a real app ---------------------------------------------------------------

@pytest.mark.kernel
def test_app_page_lists_variant_links_that_open_the_app_with_their_values(tmp_path: Path) -> None:
    from tests.server_harness import build_archive
    from tests.test_app_browser import _approve_api, _submit, serving_gallery
    from tests.test_proxy import shown_text
    nb = make_notebook(
        params='n = 3  # how many\nlabel = "x"  # a label\nrate = 0.5  # a rate\n',
        widget="print(f'RESULT {n} {label} {rate} {n * n}')\nn",
        meta={"parameters": {"rate": {"min": 0, "max": 1}}})
    nb.metadata["nbapps"]["variants"] = [
        {"name": "Big EU", "parameters": {"n": 5, "label": "EU & co", "rate": 0.25}},
        {"name": "Small", "parameters": {"n": 1}},
    ]
    with serving_gallery(tmp_path) as g:
        sub = _submit(g, build_archive(tmp_path / "app", nb))
        _approve_api(g, sub["id"])
        slug = sub["slug"]
        with g.browser("vic") as b:
            page = b.get(f"/app/{slug}")
            assert page.status_code == 200
            links = re.findall(r'<a href="([^"]+)" data-variant="([a-z0-9-]+)">([^<]+)</a>',
                               page.text)
            assert [(k, html.unescape(n)) for _, k, n in links] == [
                ("big-eu", "Big EU"), ("small", "Small")]
            href = html.unescape(links[0][0])
            assert href == f"/app/{slug}/open?n=5&label=EU+%26+co&rate=0.25", href
            frame = b.get(href)
            assert frame.status_code == 200, frame.text[:300]
            src = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text).group(1)
        with httpx.Client(base_url=g.url, timeout=300) as c:
            app_page = c.get(html.unescape(src))
        assert app_page.status_code == 200, app_page.text[:300]
        assert shown_text(app_page.text) == ["RESULT 5 EU &amp; co 0.25 25"]
