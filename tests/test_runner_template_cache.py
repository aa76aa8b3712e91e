"""Compiled page templates shared across Voilà's per-page exporters (nbapps.runner.template_cache):
the same HTML as without the cache, templates compiled once, a changed template compiled again."""
from __future__ import annotations

import re
import subprocess
import sys

import nbformat
from jinja2 import DictLoader, Environment
from nbconvert import HTMLExporter

from nbapps.runner import template_cache
from nbapps.runner.config import RunnerSettings, voila_config
from tests.nbfactory import make_notebook


def test_a_second_exporter_reuses_the_first_ones_compiled_templates():
    nb = nbformat.from_dict(make_notebook(params="x = 1\n", widget="print(x)"))
    plain, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    template_cache.install()
    template_cache.install()  # idempotent
    first = HTMLExporter(template_name="lab")
    cache = template_cache.cache_for(first.environment)
    cache.clear()
    hits = cache.hits
    once, _ = first.from_notebook_node(nb)
    compiled = len(cache)
    assert compiled > 0 and cache.hits == hits
    again, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    assert cache.hits - hits >= compiled and len(cache) == compiled
    assert strip_ids(once) == strip_ids(plain) and strip_ids(again) == strip_ids(plain)


def test_a_changed_template_is_compiled_again():
    cache = template_cache.MemoryBytecodeCache()
    old = Environment(loader=DictLoader({"page": "old {{ x }}"}), bytecode_cache=cache)
    assert old.get_template("page").render(x=1) == "old 1"
    new = Environment(loader=DictLoader({"page": "new {{ x }}"}), bytecode_cache=cache)
    assert new.get_template("page").render(x=2) == "new 2" and cache.hits == 0
    same = Environment(loader=DictLoader({"page": "new {{ x }}"}), bytecode_cache=cache)
    assert same.get_template("page").render(x=3) == "new 3" and cache.hits == 1


def test_async_and_sync_environments_do_not_share_code():
    loader = DictLoader({"page": "{{ x }}"})
    sync = Environment(loader=loader)
    asynchronous = Environment(loader=loader, enable_async=True)
    assert template_cache.cache_for(sync) is not template_cache.cache_for(asynchronous)


def test_a_runners_generated_config_installs_the_cache(tmp_path):
    """The runner's ``voila.py``, run as Voilà runs it, leaves nbconvert sharing the cache,
    Voilà's page configuration remembered and its page writes coalesced."""
    text = voila_config(RunnerSettings(), slug="my-app", port=1234, token="TOKEN",
                        root_dir=tmp_path, connection_dir=tmp_path / "c",
                        status_path=tmp_path / "s.json", cell_timeout=30)
    (tmp_path / "voila.py").write_text(text)
    probe = (
        "from traitlets.config import Config\n"
        "get_config = Config\n"
        f"exec(open({str(tmp_path / 'voila.py')!r}).read())\n"
        "from nbconvert.exporters.templateexporter import TemplateExporter\n"
        "import voila.handler\n"
        "from voila.tornado.handler import TornadoVoilaHandler\n"
        "print(getattr(TemplateExporter._create_environment, 'nbapps_shared_cache', False),\n"
        "      getattr(voila.handler.get_page_config, 'nbapps_remembering', False),\n"
        "      getattr(TornadoVoilaHandler.get, 'nbapps_coalesced', False))\n"
    )
    elsewhere = tmp_path / "cwd"  # not beside voila.py, which would shadow the voila package
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True True True"


def strip_ids(html: str) -> str:
    """nbconvert gives each render fresh uuids (anchors, widget ids)."""
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", html)
