"""Library warm-up in the kernel template (nbapps.runner.library_warmup): the one-time work of
matplotlib and pandas is done before kernels are forked, and leaves nothing an app could see."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from nbapps.runner.provisioner import install_client
from tests.test_runner_fork import Template, kernel_env, run, start

STATE = textwrap.dedent("""
    import json, random, sys, threading
    import IPython.core.inputtransformer2
    import numpy as np, pandas as pd, matplotlib, matplotlib.units, matplotlib.pyplot
    from matplotlib import font_manager
    from matplotlib._pylab_helpers import Gcf

    def state():
        return {
            "figures": len(Gcf.get_all_fig_managers()),
            "converters": sorted(repr(k) for k in matplotlib.units.registry),
            "random": repr(random.getstate()), "numpy": repr(np.random.get_state()),
            "threads": threading.active_count(), "rc": repr(sorted(matplotlib.rcParams.items())),
            "pandas_options": repr(pd.get_option("display.max_rows")),
        }
""")


def test_warm_up_does_the_libraries_first_draw_and_changes_nothing_an_app_sees():
    script = STATE + textwrap.dedent("""
        from nbapps.runner.library_warmup import warm_libraries
        before = state()
        fonts = font_manager.FontManager._findfont_cached.cache_info().currsize
        warmed, failed = warm_libraries()
        print(json.dumps({"before": before, "after": state(), "warmed": warmed,
                          "failed": failed, "fonts_before": fonts,
                          "fonts_after":
                              font_manager.FontManager._findfont_cached.cache_info().currsize}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "MPLBACKEND": "agg"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["warmed"] == ["IPython.core.inputtransformer2", "matplotlib.pyplot", "pandas"]
    assert result["failed"] == []
    assert result["fonts_after"] > result["fonts_before"], "no figure was drawn"
    assert result["after"] == result["before"]


def test_only_imported_libraries_are_warmed():
    script = ("import json, sys\nfrom nbapps.runner.library_warmup import warm_libraries\n"
              "print(json.dumps([warm_libraries(), 'matplotlib' in sys.modules,"
              " 'pandas' in sys.modules, 'IPython' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [[[], []], False, False, False]


@pytest.mark.kernel
def test_a_forked_kernel_starts_from_warmed_libraries_as_a_new_process_would(tmp_path):
    """The template warms its libraries once it is quiet after ``ready`` and says so; a kernel
    forked after that has matplotlib's fonts found before it draws, its first pyplot figure is
    number 1 and pandas has registered no matplotlib converters (as in a spawned kernel)."""
    t = Template(tmp_path / "tpl", ["numpy", "pandas", "matplotlib.pyplot"],
                 env={"NBAPPS_TEMPLATE_ONLY": "template"})
    install_client(t.client)

    async def scenario() -> tuple[dict, dict, dict]:
        ready = await t.client.wait_ready(120)
        deadline = time.monotonic() + 60
        while t.client.warmed is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the client reads the template's messages meanwhile
        warmed = t.client.warmed or {}
        km = await start(tmp_path, kernel_env())
        try:
            probe = await run(km, textwrap.dedent("""
                import json, os, matplotlib.units, pandas as pd, matplotlib.pyplot as plt
                from matplotlib import font_manager
                fonts = font_manager.FontManager._findfont_cached.cache_info().currsize
                fig, ax = plt.subplots()
                print(json.dumps({"fonts": fonts > 0, "figure": fig.number, "ppid": os.getppid(),
                                  "converters": pd.Timestamp in matplotlib.units.registry}))
            """))
        finally:
            await km.shutdown_kernel(now=True)
        return ready, warmed, probe

    try:
        ready, warmed, probe = asyncio.run(scenario())
    finally:
        install_client(None)
        t.stop()
    assert ready["fork_safe"], ready
    assert warmed.get("warmed") == ["IPython.core.inputtransformer2", "matplotlib.pyplot",
                                    "pandas"], warmed
    assert warmed["failed"] == [] and warmed["fork_safe"], warmed
    assert probe == {"fonts": True, "figure": 1, "converters": False, "ppid": t.proc.pid}
