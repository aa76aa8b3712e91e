"""The app page's parameter form: generated from the live contract, round-trips through coerce."""
from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser

import nbformat
import pytest

from nbapps.contract import ParameterContract
from tests.nbfactory import make_notebook
from tests.server_harness import archive_of, catalog_of, thread_gallery

HOSTILE = '<script>alert("x")</script>'
PARAMS = [
    {"name": "n", "type": "int", "default": 5, "help": f"how many {HOSTILE}", "min": 1,
     "max": 10},
    {"name": "rate", "type": "float", "default": 0.25, "help": "a rate"},
    {"name": "flag", "type": "bool", "default": True, "help": "switch"},
    {"name": "off", "type": "bool", "default": False},
    {"name": "region", "type": "str", "default": "EU", "help": "sales region",
     "choices": ["EU", "US", HOSTILE]},
    {"name": "size", "type": "int", "default": 2, "choices": [1, 2, 3]},
    {"name": "label", "type": "str", "default": "hello world"},
    {"name": "items", "type": "list", "default": [1, "a", True]},
    {"name": "opts", "type": "dict", "default": {"k": [1, 2]}},
]


class FormParser(HTMLParser):
    """Collects the parameter form: its attributes, inputs, selects (with options), labels."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str | None] | None = None
        self.inputs: dict[str, dict[str, str | None]] = {}
        self.selects: dict[str, list[dict[str, str | None]]] = {}
        self.labels: set[str] = set()
        self.label_text: dict[str, str] = {}
        self.hints: dict[str, str] = {}
        self._in_form = False
        self._select: str | None = None
        self._text_for: dict[str, str] | None = None
        self._key = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and "param-form" in (a.get("class") or ""):
            self.form, self._in_form = a, True
        if not self._in_form:
            return
        if tag == "input":
            self.inputs[str(a["name"])] = a
        elif tag == "select":
            self._select = str(a["name"])
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(a)
        elif tag == "label":
            self.labels.add(str(a.get("for")))
            self._text_for, self._key = self.label_text, str(a.get("for"))[2:]
        elif tag == "span" and str(a.get("id", "")).endswith("-help"):
            self._text_for, self._key = self.hints, str(a["id"])[2:-5]

    def handle_data(self, data: str) -> None:
        if self._text_for is not None:
            self._text_for[self._key] = self._text_for.get(self._key, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("label", "span"):
            self._text_for = None
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None


def submitted(p: FormParser) -> dict[str, str]:
    """What a browser sends for the form left as it is."""
    out = {name: str(a.get("value")) for name, a in p.inputs.items()}
    for name, options in p.selects.items():
        chosen = [o for o in options if "selected" in o] or options[:1]
        out[name] = str(chosen[0]["value"])
    return out


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("appform")) as g:
        with catalog_of(g) as (cat, store):
            nb = make_notebook(meta={"title": "Form app"})
            files = {"app.ipynb": nbformat.writes(nb).encode()}
            manifest = {"notebook": "app.ipynb", "title": "Form app", "description": "d",
                        "tags": ["t"], "thumbnail": None, "parameters": PARAMS,
                        "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
            files["manifest.json"] = json.dumps(manifest).encode()
            data = archive_of(files)
            sha = hashlib.sha256(data).hexdigest()
            v = cat.submit(slug="form-app", title="Form app", description="d", tags=("t",),
                           sha256=sha, manifest=manifest, store_key=store.put(sha, data),
                           submitter="ana", thumbnail=None, size=len(data))
            cat.decide(v.version.id, "rob", "approve", "ok")
        yield g


def test_form_inputs_from_contract(gallery):
    with gallery.client("vic") as c:
        page = c.get("/app/form-app")
    assert page.status_code == 200, page.text
    p = FormParser()
    p.feed(page.text)
    assert p.form is not None
    # "Open app" goes to the app's frame (the running app in a gallery page)
    assert p.form["method"] == "get" and p.form["action"] == "/app/form-app/open"
    n = p.inputs["n"]
    assert (n["type"], n["value"], n["min"], n["max"], n["step"]) == ("number", "5", "1", "10",
                                                                        "1")
    rate = p.inputs["rate"]
    assert (rate["type"], rate["value"], rate["step"]) == ("number", "0.25", "any")
    assert "min" not in rate and "max" not in rate
    for name, default in (("flag", "true"), ("off", "false")):
        opts = p.selects[name]
        assert [o["value"] for o in opts] == ["true", "false"]
        assert [o["value"] for o in opts if "selected" in o] == [default]
    region = p.selects["region"]
    assert [o["value"] for o in region] == ["EU", "US", HOSTILE]  # unescaped by the parser
    assert [o["value"] for o in region if "selected" in o] == ["EU"]
    assert [o["value"] for o in p.selects["size"] if "selected" in o] == ["2"]
    assert p.inputs["label"]["type"] == "text" and p.inputs["label"]["value"] == "hello world"
    assert json.loads(str(p.inputs["items"]["value"])) == [1, "a", True]
    assert json.loads(str(p.inputs["opts"]["value"])) == {"k": [1, 2]}
    assert {f"p-{x['name']}" for x in PARAMS} <= p.labels
    # labels are the help comments (capitalised), else the name in words; the range is a hint
    assert p.label_text == {"n": f"How many {HOSTILE}", "rate": "A rate", "flag": "Switch",
                            "off": "Off", "region": "Sales region", "size": "Size",
                            "label": "Label", "items": "Items", "opts": "Opts"}
    assert p.hints == {"n": "1 to 10"}
    # hostile text escaped everywhere
    assert "How many &lt;script&gt;" in page.text and HOSTILE not in page.text
    # no second list of the same facts below the form, one "Open app" action
    assert "<th>Default</th>" not in page.text and page.text.count(">Open app<") == 1
    assert 'id="share-link" href="/app/form-app/open"' in page.text


def test_form_defaults_round_trip(gallery):
    with gallery.client("vic") as c:
        page = c.get("/app/form-app")
    p = FormParser()
    p.feed(page.text)
    contract = ParameterContract.from_dict(PARAMS)
    raw = submitted(p)
    assert set(raw) == {x["name"] for x in PARAMS}
    values = contract.coerce(raw)
    assert values == {x["name"]: x["default"] for x in PARAMS}
    assert values["flag"] is True and values["off"] is False
    # a changed value goes through as typed
    raw.update(flag="false", n="7", region="US")
    changed = contract.coerce(raw)
    assert changed["flag"] is False and changed["n"] == 7 and changed["region"] == "US"


def test_app_without_parameters_has_no_form(tmp_path):
    from tests.server_harness import seed_version
    with thread_gallery(tmp_path) as g:
        with catalog_of(g) as (cat, store):
            seed_version(cat, store, slug="plain", submitter="ana", title="Plain")
        with g.client("rita") as c:
            page = c.get("/app/plain")  # not live yet: no form, no usage failure
        assert page.status_code == 200 and "param-form" not in page.text
