"""Serving benchmark: nbapps runners behind the proxy vs plain Voilà vs a static file, in one run.

    .venv/bin/python benchmarks/serve.py [--apps tiny,pandas] [--samples 15] [--quick]

Not a test: it prints figures and the ratios of DESIGN.md's targets, measured side by side on
this machine (which may be shared: the load average is printed with the results). For each app
(a tiny widget app, a pandas + matplotlib app):

- **plain**: ``voila app.ipynb`` (standalone, no preheating), a new request = a new kernel;
- **warm**: the app through the gallery's proxy with a warm runner (pools full), time to the end
  of the streamed HTML; **static**: the same HTML served as a file by the same tornado app;
- **burst**: 20 simultaneous viewers (pool sized for it), p95 vs plain's single request;
- **custom**: custom parameters through the proxy vs the execution time of the cells after the
  ``parameters`` cell (nbclient, in a kernel that has run the cells above and imported the
  modules: the strictest baseline) + 50 ms;
- **viewers**: 50 concurrent viewers, all must get their page; p95 and the peak RSS of every
  process serving them (gallery, Voilà, kernels).

Every viewer closes its page afterwards (Voilà's unload beacon), as a browser would.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.web
from nbformat.v4 import new_code_cell

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nbapps.runner import RunnerSettings  # noqa: E402
from tests.nbfactory import make_notebook, write_notebook  # noqa: E402
from tests.test_runner_fixtures import Gallery, write_bundle  # noqa: E402

KERNEL_ID = re.compile(rb'"kernelId":\s*"([0-9a-f-]{36})"')


# -- apps ------------------------------------------------------------------------------------------
def tiny_app():
    return make_notebook()


def pandas_app():
    nb = make_notebook(
        params='rows = 200  # rows\ntitle = "Sales"  # chart title\n',
        widget="import ipywidgets as w\nw.IntSlider(value=rows, min=0, max=1000)",
        extra=[
            "%matplotlib inline\nimport numpy as np\nimport pandas as pd\n"
            "import matplotlib.pyplot as plt",
            new_code_cell("df = pd.DataFrame({'x': np.arange(rows), 'y': np.random.default_rng(0)"
                          ".normal(size=rows).cumsum()})\ndf.describe()",
                          metadata={"tags": ["widget"]}),
            new_code_cell("fig, ax = plt.subplots(figsize=(6, 3))\n"
                          "df.plot(x='x', y='y', ax=ax, title=title)\nplt.show()",
                          metadata={"tags": ["widget"]}),
        ],
    )
    return nb


APPS = {"tiny": (tiny_app, "n=5"), "pandas": (pandas_app, "rows=300&title=Custom")}


# -- clients ---------------------------------------------------------------------------------------
def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 300
          ) -> tuple[float, int, bytes]:
    """GET on a new connection, read to the end of the (streamed) body."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed, resp.status, body


def close_page(base: str, slug: str, body: bytes) -> None:
    """Voilà's unload beacon, as the browser sends it when the page closes."""
    m = KERNEL_ID.search(body)
    if not m:
        return
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    boundary = "nbappsbench"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"_xsrf\"\r\n\r\n\r\n"
            f"--{boundary}--\r\n")
    conn.request("POST", f"/apps/{slug}/voila/api/shutdown/{m.group(1).decode()}", body=form,
                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    conn.getresponse().read()
    conn.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


# -- plain Voilà -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain_voila(nb_path: Path, samples: int) -> list[float]:
    port = free_port()
    log = open(nb_path.with_suffix(".voila.log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(nb_path), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                fetch(f"http://127.0.0.1:{port}/voila/static/voila.js", timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        fetch(url)  # first request pays one-time imports in the Voilà process
        times = []
        for _ in range(samples):
            time.sleep(1.0)
            elapsed, status, body = fetch(url)
            assert status == 200 and body.rstrip().endswith(b"</html>")
            times.append(elapsed)
        return times
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


# -- post-parameters baseline ----------------------------------------------------------------------
def post_parameter_execution(nb_path: Path, runs: int) -> tuple[float, float]:
    """(first run with imports, median warm run) of the cells after the parameters cell."""
    import nbformat
    from nbclient import NotebookClient

    from nbapps.kernel import NbappsKernelManager

    nb = nbformat.read(str(nb_path), as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))

    async def run() -> tuple[float, float]:
        km = NbappsKernelManager(kernel_name="python3")
        client = NotebookClient(nb, km=km, timeout=120, resources={
            "metadata": {"path": str(nb_path.parent)}})
        async with client.async_setup_kernel():
            for i in range(at + 1):
                await client.async_execute_cell(nb.cells[i], i)
            samples = []
            for _ in range(runs + 1):
                t0 = time.perf_counter()
                for i in range(at + 1, len(nb.cells)):
                    await client.async_execute_cell(nb.cells[i], i)
                samples.append(time.perf_counter() - t0)
        return samples[0], statistics.median(samples[1:])

    return asyncio.run(run())


# -- through the gallery ---------------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Peak summed RSS of this process (the gallery) and a runner's process tree."""

    def __init__(self, pids: Any) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            total = 0
            procs = [psutil.Process()]
            for pid in self.pids():
                try:
                    root = psutil.Process(pid)
                    procs += [root, *root.children(recursive=True)]
                except psutil.Error:
                    pass
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.2)


def concurrent_viewers(g: Gallery, slug: str, n: int) -> tuple[list[float], int]:
    def one(_: int) -> tuple[float, int, bytes]:
        return fetch(g.url(f"/apps/{slug}/"))

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    ok = [r for r in results if r[1] == 200 and r[2].rstrip().endswith(b"</html>")]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda r: close_page(g.url(""), slug, r[2]), ok))
    return [r[0] for r in results], len(ok)


def bench_app(name: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    make, custom_query = APPS[name]
    nb = make()
    folder = work / name
    bundle = write_bundle(folder / "bundle", nb)
    plain_nb = write_notebook(nb, folder / "plain" / "app.ipynb")
    out: dict[str, Any] = {"app": name}
    print(f"\n== {name}: plain voila ({args.plain} new requests)", flush=True)
    out["plain"] = plain_voila(plain_nb, args.plain)
    print(f"   median {ms(statistics.median(out['plain']))}", flush=True)
    print(f"== {name}: post-parameter cells with nbclient", flush=True)
    out["post_first"], out["post_warm"] = post_parameter_execution(plain_nb, 5)

    static_dir = folder / "static"
    static_dir.mkdir()
    runner = RunnerSettings(pool_size=args.burst, custom_pool_size=2, fill_delay=1.0)
    g = Gallery(folder / "gallery", {name: bundle}, runner=runner,
                max_kernels_per_app=args.viewers + args.burst + 10,
                extra_handlers=[(r"/static/(.*)", tornado.web.StaticFileHandler,
                                 {"path": str(static_dir)})])
    sampler = RssSampler(lambda: [r.pid for r in ([g.supervisor.runner_for(name)]
                                                   if g.supervisor else []) if r and r.pid])
    try:
        t0 = time.monotonic()
        g.start()
        g.ready(name, warm=True, timeout=600)
        out["start"] = time.monotonic() - t0
        print(f"== {name}: runner warm in {out['start']:.1f}s (pool {args.burst}+2)", flush=True)
        _, status, page = fetch(g.url(f"/apps/{name}/"))
        assert status == 200
        close_page(g.url(""), name, page)
        (static_dir / "page.html").write_bytes(page)
        out["page_bytes"] = len(page)
        warm, static = [], []
        for _ in range(args.samples):
            g.wait_warm(name, timeout=600)
            time.sleep(0.3)
            static.append(fetch(g.url("/static/page.html"))[0])
            elapsed, status, body = fetch(g.url(f"/apps/{name}/"))
            assert status == 200 and body.rstrip().endswith(b"</html>")
            warm.append(elapsed)
            close_page(g.url(""), name, body)
        out["warm"], out["static"] = warm, static
        custom = []
        for _ in range(max(args.samples // 2, 3)):
            g.wait_warm(name, timeout=600)
            time.sleep(0.3)
            elapsed, status, body = fetch(g.url(f"/apps/{name}/?{custom_query}"))
            assert status == 200 and body.rstrip().endswith(b"</html>"), status
            custom.append(elapsed)
            close_page(g.url(""), name, body)
        out["custom"] = custom
        print(f"== {name}: burst of {args.burst}", flush=True)
        g.wait_warm(name, timeout=600)
        time.sleep(0.5)
        out["burst"], out["burst_ok"] = concurrent_viewers(g, name, args.burst)
        print(f"== {name}: {args.viewers} concurrent viewers", flush=True)
        g.wait_warm(name, timeout=600)
        time.sleep(0.5)
        sampler.start()
        out["viewers"], out["viewers_ok"] = concurrent_viewers(g, name, args.viewers)
        sampler.stop.set()
        sampler.join(5)
        out["peak_rss"] = sampler.peak
        out["budget"] = g.settings.budget()
    finally:
        sampler.stop.set()
        g.stop()
    return out


def report(results: list[dict[str, Any]]) -> None:
    print("\n" + "=" * 78)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores; machine shared)")
    for r in results:
        plain = statistics.median(r["plain"])
        warm = statistics.median(r["warm"])
        static = statistics.median(r["static"])
        burst95 = pct(r["burst"], 0.95)
        custom = statistics.median(r["custom"])
        v95 = pct(r["viewers"], 0.95)
        print(f"\n{r['app']} (page {r['page_bytes'] / 1024:.0f} KiB)")
        print(f"  plain voila, new request   p50 {ms(plain)}")
        print(f"  ours, warm, through proxy  p50 {ms(warm)}   plain/ours = {plain / warm:7.1f}x"
              f"   (target >= 100x)")
        print(f"  same HTML as static file   p50 {ms(static)}   ours/static = "
              f"{warm / static:5.2f}x   (target <= 3x)")
        print(f"  burst of {len(r['burst'])} viewers         p95 {ms(burst95)}   "
              f"ok {r['burst_ok']}/{len(r['burst'])}   vs plain single {ms(plain)} "
              f"({'met' if burst95 <= plain else 'NOT met'})")
        limit = r["post_warm"] + 0.050
        print(f"  custom parameters          p50 {ms(custom)}   post-parameter cells: "
              f"{ms(r['post_warm'])} warm, {ms(r['post_first'])} first run; target <= "
              f"{ms(limit)} ({'met' if custom <= limit else 'NOT met'})")
        print(f"  {len(r['viewers'])} concurrent viewers      p95 {ms(v95)}   "
              f"ok {r['viewers_ok']}/{len(r['viewers'])}   peak RSS "
              f"{r['peak_rss'] / 2**20:.0f} MiB (budget {r['budget'] / 2**20:.0f} MiB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--apps", default="tiny,pandas")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--plain", type=int, default=5)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.samples, args.plain, args.burst, args.viewers = 4, 2, 4, 6
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # runs the cleanup in finally blocks

    signal.signal(signal.SIGTERM, stop)
    work = Path(tempfile.mkdtemp(prefix="nbapps-bench-"))
    results = []
    try:
        for name in args.apps.split(","):
            results.append(bench_app(name.strip(), work, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
