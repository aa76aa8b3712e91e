"""Runner building blocks without kernels: served variants, in-kernel code, config, env, proxy."""
from __future__ import annotations

import asyncio
import html as html_module
import json
import os
import struct
import threading
from pathlib import Path

import nbformat
import pytest
import tornado.netutil
import tornado.web
import tornado.websocket
from nbformat.v4 import new_code_cell, new_markdown_cell

from nbapps.errors import BundleError
from nbapps.runner import kernel_side
from nbapps.runner.config import RunnerSettings, voila_config
from nbapps.runner.env import filtered_environment, runner_environment
from nbapps.runner.notebook_variants import (
    QUERY_KEY,
    build_variants,
    decode_values,
    encode_values,
    imported_modules,
    is_wait_cell,
    wait_cell_source,
)
from nbapps.runner.process import _copy_read_only, make_read_only, read_app, remove_tree
from nbapps.server.app_pages import bad_parameters_page
from nbapps.server.proxy_shared import clean_query
from nbapps.server.proxy_websocket import kernel_message_type
from nbapps.server.stream_rewrite import Scrubber
from tests.nbfactory import make_notebook, write_notebook

CONTRACT = [
    {"name": "n", "type": "int", "default": 3, "help": "", "choices": None, "min": 0, "max": 10},
    {"name": "rate", "type": "float", "default": 0.5, "help": "", "choices": None, "min": None,
     "max": None},
    {"name": "region", "type": "str", "default": "EU", "help": "", "choices": ["EU", "US"],
     "min": None, "max": None},
    {"name": "flag", "type": "bool", "default": False, "help": "", "choices": None, "min": None,
     "max": None},
]


def _hidden(cell: nbformat.NotebookNode) -> bool:
    j = cell.metadata.get("jupyter", {})
    return bool(j.get("source_hidden") and j.get("outputs_hidden"))


def test_variants_hide_non_widget_cells_and_keep_every_cell():
    nb = make_notebook(extra=["import math\nx = math.sqrt(n)"])
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old")]
    v = build_variants(nb, CONTRACT[:1])
    assert v.has_widget_cells
    assert len(v.default.cells) == len(nb.cells)
    shown = [c for c in v.default.cells if not _hidden(c)]
    assert [("widget" in c.metadata.get("tags", [])) for c in shown] == [True]
    assert all(c.outputs == [] for c in v.default.cells if c.cell_type == "code")
    # custom: preload + wait cells right after the parameters cell, hidden
    cells = v.custom.cells
    at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    assert cells[at + 1].metadata["nbapps"]["role"] == "preload"
    assert is_wait_cell(cells[at + 2]) and _hidden(cells[at + 2])
    assert v.preloaded == ("math", "ipywidgets")
    assert len(cells) == len(nb.cells) + 2


def test_no_widget_cells_shows_everything_and_no_parameters_means_no_custom_variant():
    nb = make_notebook(params=None, widget=None, extra=["print(1)", new_markdown_cell("hi")])
    v = build_variants(nb, [])
    assert not v.has_widget_cells and v.custom is None
    assert not any(_hidden(c) for c in v.default.cells)


def test_imported_modules_reads_magics_and_skips_relative_imports():
    names = imported_modules(["%matplotlib inline\nimport pandas as pd, numpy\n"
                              "from matplotlib import pyplot\nfrom . import local\n"
                              "from __future__ import annotations\ndef f():\n    import json\n",
                              "this is not python ("])
    assert names == ["pandas", "numpy", "matplotlib", "json"]


def test_encoded_values_round_trip():
    values = {"n": 4, "region": "US", "rate": 0.25, "flag": True, "items": ["a", "é"]}
    text = encode_values(values)
    assert "=" not in text and "&" not in text
    assert decode_values(text) == values


@pytest.mark.parametrize(
    ("values", "expected_error"),
    [
        ({"n": 4, "rate": 1, "region": "US", "flag": True}, None),
        ({"n": "4"}, "must be a int"),
        ({"n": True}, "must be a int"),
        ({"n": 11}, "above its maximum"),
        ({"n": -1}, "below its minimum"),
        ({"region": "ASIA"}, "allowed values"),
        ({"flag": 1}, "must be a bool"),
        ({"evil": 1}, "unknown parameter"),
    ],
)
def test_in_kernel_check_of_parameters(values, expected_error):
    query = f"{QUERY_KEY}={encode_values(values)}"
    if expected_error is None:
        out = kernel_side._nbapps_parameters(query, CONTRACT, QUERY_KEY)
        assert out == {**values, "rate": 1.0} and isinstance(out["rate"], float)
    else:
        with pytest.raises(ValueError, match=expected_error):
            kernel_side._nbapps_parameters(query, CONTRACT, QUERY_KEY)


def test_in_kernel_check_refuses_extra_or_missing_query_keys():
    good = encode_values({"n": 1})
    for query in ("", f"{QUERY_KEY}={good}&template=x", f"{QUERY_KEY}={good}&{QUERY_KEY}={good}"):
        with pytest.raises(ValueError, match="without its parameters"):
            kernel_side._nbapps_parameters(query, CONTRACT, QUERY_KEY)


def test_wait_cell_is_valid_python_and_cleans_up_after_itself():
    source = wait_cell_source(CONTRACT)
    compile(source, "<cell>", "exec")
    namespace: dict = {}
    os.environ.pop("VOILA_PREHEAT", None)
    os.environ["QUERY_STRING"] = f"{QUERY_KEY}={encode_values({'n': 7, 'region': 'US'})}"
    try:
        exec(source, namespace)  # noqa: S102 (our own generated code)
    finally:
        os.environ.pop("QUERY_STRING", None)
    assert namespace["n"] == 7 and namespace["region"] == "US"
    assert not [k for k in namespace if k.startswith("_nbapps")]


class _InfoSocket(tornado.websocket.WebSocketHandler):
    def open(self, kernel_id: str) -> None:
        self.ping(b"keepalive")  # the client must answer pings and keep waiting
        tornado.ioloop.IOLoop.current().call_later(
            0.2, lambda: self.write_message({"QUERY_STRING": f"kid={kernel_id}", "X": "é" * 70000}))


def test_kernel_side_websocket_client_speaks_voila_request_info_protocol(monkeypatch):
    loop = asyncio.new_event_loop()
    holder: dict = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        app = tornado.web.Application([(r"/base/voila/query/(.*)", _InfoSocket)])
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        holder["port"] = sockets[0].getsockname()[1]
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        holder["ready"].set()
        loop.run_forever()

    import tornado.httpserver
    import tornado.ioloop

    holder["ready"] = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    holder["ready"].wait(10)
    try:
        monkeypatch.setenv("VOILA_PREHEAT", "True")
        monkeypatch.setenv("VOILA_APP_PORT", str(holder["port"]))
        monkeypatch.setenv("VOILA_SERVER_URL", "/base/")
        monkeypatch.setenv("VOILA_KERNEL_ID", "k-1")
        monkeypatch.delenv("QUERY_STRING", raising=False)
        assert kernel_side._nbapps_request_query() == "kid=k-1"
        assert os.environ["QUERY_STRING"] == "kid=k-1"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_voila_config_has_the_safe_settings_and_the_fix_classes(tmp_path):
    text = voila_config(RunnerSettings(), slug="my-app", port=1234, token="TOKEN",
                        root_dir=tmp_path, connection_dir=tmp_path / "c",
                        status_path=tmp_path / "s.json", cell_timeout=30)
    for line in (
        "c.Voila.ip = '127.0.0.1'", "c.Voila.base_url = '/apps/my-app/'", "c.Voila.token = 'TOKEN'",
        "c.VoilaConfiguration.allow_template_override = 'NO'",
        "c.VoilaConfiguration.allow_theme_override = 'NO'",
        "c.VoilaConfiguration.strip_sources = True", "c.VoilaConfiguration.show_tracebacks = False",
        "c.VoilaConfiguration.preheat_kernel = True",
        "c.RunnerKernelManager.kernel_manager_class = 'nbapps.kernel.NbappsServerKernelManager'",
        "c.ServerKernelManager.client_class = 'nbapps.kernel.NbappsKernelClient'",
        "c.RunnerKernelManager.cull_connected = True", "c.VoilaExecutor.timeout = 30",
        "c.VoilaExecutor.interrupt_on_timeout = True",
    ):
        assert line in text, line
    compile(text, "voila.py", "exec")


def test_environment_is_an_allowlist():
    source = {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
              "NBAPPS_TEST_SECRET": "x", "NBAPPS_DB_URL": "postgresql://u:p@h/db",
              "AWS_SECRET_ACCESS_KEY": "k", "JUPYTER_TOKEN": "t", "PYTHONPATH": "/evil"}
    assert filtered_environment(source) == {"PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8",
                                            "LC_ALL": "C", "TZ": "UTC"}
    env = runner_environment(jupyter_path="/j", config_dir="/c", runtime_dir="/r", data_dir="/d",
                             source=source, extra_names=["PYTHONPATH"])
    assert env["PYTHONPATH"] == "/evil" and env["JUPYTER_PATH"] == "/j"
    assert not {"NBAPPS_TEST_SECRET", "NBAPPS_DB_URL", "AWS_SECRET_ACCESS_KEY",
                "JUPYTER_TOKEN"} & set(env)


def test_read_only_copy_and_links_refused(tmp_path):
    src = tmp_path / "bundle"
    write_notebook(make_notebook(), src / "app.ipynb")
    (src / "data").mkdir()
    (src / "data" / "x.csv").write_text("a\n1\n")
    dest = tmp_path / "copy"
    _copy_read_only(src, dest)
    make_read_only(dest)
    assert (dest / "data" / "x.csv").stat().st_mode & 0o777 == 0o444
    assert (dest / "data").stat().st_mode & 0o777 == 0o555
    nb, params, name = read_app(dest)
    assert name == "app.ipynb" and [p["name"] for p in params] == ["n", "label"]
    remove_tree(dest)
    assert not dest.exists()
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="link"):
        _copy_read_only(src, tmp_path / "copy2")


def test_bundle_may_not_use_reserved_names(tmp_path):
    write_notebook(make_notebook(), tmp_path / "app.ipynb")
    (tmp_path / "nbapps-default.ipynb").write_text("{}")
    with pytest.raises(BundleError, match="reserved"):
        read_app(tmp_path)


def test_scrubber_removes_a_secret_split_across_chunks():
    s = Scrubber("SECRET-TOKEN")
    chunks = [b"abc SECR", b"ET-TOK", b"EN def SECRET-TOKEN", b" end S"]
    out = b"".join(s.feed(c) for c in chunks) + s.close()
    assert out == b"abc  def  end S"
    assert Scrubber("T0K3N").feed(b"no secret here") == b"no secret here"


def test_query_cleaning_drops_auth_and_overrides():
    assert clean_query("v=1&token=abc&template=x&Theme=dark&session_id=s") == "v=1&session_id=s"


def test_kernel_message_type_reads_json_and_binary_protocol():
    msg = {"header": {"msg_type": "execute_request"}, "content": {}}
    assert kernel_message_type(json.dumps(msg)) == "execute_request"
    parts = [b"shell", json.dumps({"msg_type": "comm_msg"}).encode(), b"{}", b"{}", b"{}"]
    offsets, pos = [], 8 * (len(parts) + 1)
    for p in parts:
        offsets.append(pos)
        pos += len(p)
    binary = struct.pack("<Q", len(parts)) + b"".join(struct.pack("<Q", o) for o in offsets)
    assert kernel_message_type(binary + b"".join(parts)) == "comm_msg"
    assert kernel_message_type(b"\x00garbage") is None
    assert kernel_message_type("not json") is None


def test_bad_parameters_page_lists_every_parameter():
    html = bad_parameters_page("Demo", ["unknown parameter 'x'"], CONTRACT, "/apps/demo/")
    for name in ("n", "rate", "region", "flag", "one of: EU, US", "min 0", "max 10",
                 "unknown parameter 'x'"):
        assert name in html_module.unescape(html)


def test_read_app_derives_the_contract_without_a_manifest(tmp_path):
    nb = make_notebook(meta={"parameters": {"n": {"min": 0, "max": 5}}})
    nb.cells.append(new_code_cell("print(n)"))
    write_notebook(nb, tmp_path / "app.ipynb")
    _nb, params, _ = read_app(tmp_path)
    assert params[0]["name"] == "n" and params[0]["max"] == 5
    assert Path(tmp_path / "app.ipynb").exists()
