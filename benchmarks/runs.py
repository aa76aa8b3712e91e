"""Runs benchmark (not a test): ratios measured in one run, on the same notebook (issue 14).

1. **A run through the API vs bare papermill + nbconvert** (target ≤ 1.2×). A real gallery in
   this process, configured as a user gets it by default except ``run_pdf=False``, runs the
   notebook: ``POST /api/apps/<slug>/runs``, then ``GET /api/runs/<id>`` polled every 20 ms until
   it has finished (queue + confined program + execution + report + artifacts + bookkeeping).
   Against it, in this process: ``papermill.execute_notebook`` (``shutdown_kernel=
   "immediate"``, the engine setting nbapps uses) followed by nbconvert's ``HTMLExporter``
   export of the executed notebook.
2. **The PDF** (target: within 3 s more): the same run in a second gallery with the default
   configuration (``run_pdf`` on), followed by the first download of its report.pdf (printed by
   Chromium at that download, :mod:`nbapps.runs.pdf`); the figure is the difference of the
   medians.

   Sides alternate (bare, HTML gallery, PDF gallery) and every measurement starts with this
   process tree idle (no CPU used for 0.3 s: the galleries' spare programs prepared, as for a
   run that arrives a few seconds after the previous one).
3. **A batch of 20 vs the same 20 runs one at a time** (target ≥ 1.7×): the time until all
   20 runs of one ``{"batch": [...]}`` request have finished with the default ``run_workers``
   (the CPU count), vs 20 requests of one run each, each waited for, with ``run_workers=1``;
   both galleries otherwise default (PDF offered: printed only when downloaded,
   so not by these runs; ``--no-pdf`` to turn it off). After the batch, the first and the
   second download of one run's PDF are timed (a print, then a read from the store).
   Also printed: the cores each side keeps busy (CPU time of this process tree / wall time:
   one run at a time already overlaps the next run's preparation, the spare program, so it is
   not a one-core baseline), and the same 20 sets through a papermill + nbconvert loop in this
   process (what one scripts by hand; HTML only).

    .venv/bin/python benchmarks/runs.py [--notebook PATH] [--repeat 5] [--batch 20] [--json]

Default notebook: the test factory's tiny widget app (an IntSlider; no pandas); ``--notebook
gallery/loan-calculator/loan-calculator.ipynb`` for a demo app with pandas and matplotlib.
The machine is shared: the load is printed before and after each part.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_PDF = ["--NbappsServer.run_pdf=False"]
POLL = 0.02


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} {five:.2f} on {os.cpu_count()} cores"


def notebook(path: str | None) -> Any:
    import nbformat

    if path:
        return nbformat.read(path, as_version=4)
    from tests.nbfactory import make_notebook

    return make_notebook()


def cpu_seconds() -> float:
    """CPU time of this process tree: this process, its descendants alive now and every
    descendant that has ended (reaped here, or by a descendant alive now: the run zygote
    reaps the programs it forked). Unlike wall time, hardly changed by what else runs on
    the machine."""
    import psutil

    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            c = proc.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
    return total


def own_cpu_seconds() -> float:
    """CPU time of this process alone (the galleries run in it)."""
    t = os.times()
    return t.user + t.system


def settle(quiet: float = 0.3, timeout: float = 30.0) -> None:
    """Until this process and its descendants have used no CPU for ``quiet`` seconds (the
    galleries' spare programs are prepared, nothing left over from the last measurement)."""
    import psutil

    me = psutil.Process()

    def cpu() -> float:
        total = 0.0
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    deadline = time.monotonic() + timeout
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu()
        # this process polls a little itself (gallery threads): allow 2 % of a core
        if now - before <= 0.02 * quiet:
            return
        before = now


def bare(nb_path: Path, workdir: Path, parameters: dict[str, Any] | None = None) -> float:
    """papermill + nbconvert HTML in this process."""
    import papermill
    from nbconvert import HTMLExporter

    started = time.perf_counter()
    out = workdir / "out.ipynb"
    executed = papermill.execute_notebook(str(nb_path), str(out), cwd=str(workdir),
                                          parameters=parameters or {},
                                          progress_bar=False, log_output=False,
                                          shutdown_kernel="immediate")
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(executed)
    (workdir / "out.html").write_text(html)
    return time.perf_counter() - started


def wait_all(c: Any, ids: list[int], batch: str | None,
             timeout: float = 1800.0) -> list[dict[str, Any]]:
    """Poll one run every 20 ms, or a batch's list every 100 ms (one request per poll: the
    client must not load the gallery it measures)."""
    deadline = time.monotonic() + timeout
    while True:
        if batch is None:
            runs = [c.get(f"/api/runs/{ids[0]}").json()]
        else:
            items = c.get("/api/apps/bench/runs", params={"batch": batch, "limit": 1000}).json()
            by_id = {r["id"]: r for r in items["items"]}
            runs = [by_id[i] for i in ids]
        if all(r["state"] not in ("queued", "running") for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise RuntimeError(f"runs {ids} did not finish")
        time.sleep(POLL if batch is None else 5 * POLL)


def through_api(g: Any, sets: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    with g.client("vic") as c:
        started = time.perf_counter()
        body = {"parameters": sets[0]} if len(sets) == 1 else {"batch": sets}
        r = c.post("/api/apps/bench/runs", json=body)
        r.raise_for_status()
        runs = wait_all(c, [q["id"] for q in r.json()["runs"]],
                        r.json()["batch"] if len(sets) > 1 else None)
        return time.perf_counter() - started, runs


def download(g: Any, run: dict[str, Any], name: str = "report.pdf") -> float:
    """Seconds to download one artifact of ``run`` (the PDF: printed at its first download)."""
    with g.client("vic") as c:
        started = time.perf_counter()
        r = c.get(run["artifact_urls"][name], timeout=300)
        r.raise_for_status()
        return time.perf_counter() - started


def passed(runs: list[dict[str, Any]], pdf: bool) -> None:
    for run in runs:
        assert run["state"] == "passed", run["findings"]
        assert "report.html" in run["artifacts"], run
        if pdf:  # offered; printed at its first download
            assert "report.pdf" in run["artifact_urls"], run["details"].get("notes")


def publish(g: Any, nb: Any) -> None:
    """Seed and approve the app, then wait for the gallery's own check of it (a default
    gallery checks what it stores) so that it does not run during a measurement."""
    from tests.server_harness import catalog_of, seed_version

    with catalog_of(g) as (cat, store):
        sub = seed_version(cat, store, slug="bench", submitter="ana", title="Bench", nb=nb)
        cat.decide(sub.version.id, "rita", "approve", "ok")
        deadline = time.monotonic() + 300
        while (cat.count_jobs(kind="check", state="queued")
               + cat.count_jobs(kind="check", state="running")) and time.monotonic() < deadline:
            time.sleep(0.2)


@contextlib.contextmanager
def gallery(folder: Path, nb: Any, args: list[str]) -> Iterator[Any]:
    from tests.server_harness import thread_gallery

    with thread_gallery(folder, args=args) as g:
        publish(g, nb)
        through_api(g, [{}])  # warm-up: imports, the first (cold) run program
        yield g


def ranges(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s [{min(values):.2f}-{max(values):.2f}]"


def single(scratch: Path, nb: Any, nb_path: Path, repeat: int, results: dict[str, Any]) -> None:
    times: dict[str, list[float]] = {"bare": [], "html": [], "pdf": []}
    with gallery(scratch / "g-html", nb, NO_PDF) as html_g, \
            gallery(scratch / "g-pdf", nb, []) as pdf_g:
        bare(nb_path, scratch)  # warm-up: imports
        bare_cpu = []
        for _ in range(repeat):
            settle()
            cpu0 = cpu_seconds()
            times["bare"].append(bare(nb_path, scratch))
            bare_cpu.append(cpu_seconds() - cpu0)
            settle()
            seconds, runs = through_api(html_g, [{}])
            passed(runs, pdf=False)
            times["html"].append(seconds)
            settle()
            seconds, runs = through_api(pdf_g, [{}])
            passed(runs, pdf=True)
            times["pdf"].append(seconds + download(pdf_g, runs[0]))
    med = {k: statistics.median(v) for k, v in times.items()}
    results["single"] = {**{f"{k}_s": v for k, v in times.items()},
                         **{f"{k}_median": m for k, m in med.items()},
                         "ratio": med["html"] / med["bare"],
                         "ratios": [h / b for h, b in zip(times["html"], times["bare"],
                                                          strict=True)],
                         "pdf_extra_s": med["pdf"] - med["html"],
                         "bare_cpu_s": statistics.median(bare_cpu)}
    print(f"papermill + nbconvert in-process: {ranges(times['bare'])}, CPU "
          f"{statistics.median(bare_cpu):.2f} s", flush=True)
    print(f"run through the API (HTML):       {ranges(times['html'])}; ratio "
          f"{med['html'] / med['bare']:.2f}x (target <= 1.2x)", flush=True)
    print(f"run through the API (HTML + PDF): {ranges(times['pdf'])}; PDF adds "
          f"{med['pdf'] - med['html']:.2f} s (target <= 3 s)", flush=True)


def batch(scratch: Path, nb: Any, size: int, pdf: bool, results: dict[str, Any],
          spawn: bool = False) -> None:
    sets = [{"n": 1 + i % 10, "label": "xy"[i % 2]} for i in range(size)]
    extra = ([] if pdf else NO_PDF) + (["--NbappsServer.run_fork=False"] if spawn else [])
    times, cpu = {}, {}
    with gallery(scratch / "b1", nb, [*extra, "--NbappsServer.run_workers=1"]) as g:
        settle()
        started, cpu0 = time.perf_counter(), cpu_seconds()
        for one in sets:  # serial: one run at a time, each waited for
            _, runs = through_api(g, [one])
            passed(runs, pdf)
        times[1], cpu[1] = time.perf_counter() - started, cpu_seconds() - cpu0
    with gallery(scratch / "b2", nb, extra) as g:  # the default workers: the CPU count
        settle()
        cpu0, own0 = cpu_seconds(), own_cpu_seconds()
        seconds, runs = through_api(g, sets)
        passed(runs, pdf)
        times[2], cpu[2] = seconds, cpu_seconds() - cpu0
        own = own_cpu_seconds() - own0
        if pdf:
            settle()
            first, again = download(g, runs[0]), download(g, runs[0])
            results["pdf_download"] = {"first_s": first, "again_s": again}
            print(f"one run's PDF: first download (printed) {first:.2f} s, second "
                  f"{again:.3f} s", flush=True)
    # what one scripts without nbapps: papermill + nbconvert in a loop, one after the other
    nb_path = scratch / "app.ipynb"
    bare(nb_path, scratch)  # warm-up: imports
    settle()
    started, cpu0 = time.perf_counter(), cpu_seconds()
    for one in sets:
        bare(nb_path, scratch, one)
    times[0], cpu[0] = time.perf_counter() - started, cpu_seconds() - cpu0
    results["batch"] = {"serial_s": times[1], "parallel_s": times[2], "pdf": pdf,
                        "papermill_loop_s": times[0],
                        "speedup": times[1] / times[2], "runs": size,
                        "speedup_vs_papermill_loop": times[0] / times[2],
                        "cores_busy_serial": cpu[1] / times[1],
                        "cores_busy_batch": cpu[2] / times[2],
                        "cpu_per_run_serial_s": cpu[1] / size,
                        "cpu_per_run_parallel_s": cpu[2] / size}
    print(f"{size} runs{' with PDF' if pdf else ''}: one at a time (1 worker) {times[1]:.1f} s, "
          f"as one batch with {os.cpu_count()} workers (default) {times[2]:.1f} s: "
          f"{times[1] / times[2]:.2f}x "
          f"(target >= 1.7x); CPU per run {cpu[1] / size:.2f} s / {cpu[2] / size:.2f} s "
          "(gallery, programs, kernels)", flush=True)
    print(f"  batch CPU per run: {own / size:.2f} s in this process (the gallery: queue, "
          f"report.html, store; and the benchmark's polling), {(cpu[2] - own) / size:.2f} s in "
          "programs and kernels", flush=True)
    print(f"  cores busy: one at a time {cpu[1] / times[1]:.2f}, batch {cpu[2] / times[2]:.2f} "
          f"(of {os.cpu_count()}); a papermill + nbconvert loop (HTML only) {times[0]:.1f} s: "
          f"the batch is {times[0] / times[2]:.2f}x faster", flush=True)


def main() -> int:
    import nbformat

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", default=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--only", choices=("single", "batch"), default=None)
    ap.add_argument("--no-pdf", action="store_true", help="batch without PDFs")
    ap.add_argument("--spawn", action="store_true",
                    help="batch with run programs spawned, not forked from the run zygote "
                         "(run_fork=False; the configuration before stop 21)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    nb = notebook(args.notebook)
    results: dict[str, Any] = {"notebook": args.notebook or "tiny factory notebook",
                               "load_before": os.getloadavg()}
    print(load(), flush=True)
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-runs-") as tmp:
        scratch = Path(tmp)
        nb_path = scratch / "app.ipynb"
        nbformat.write(nb, str(nb_path))
        if args.only in (None, "single"):
            single(scratch, nb, nb_path, args.repeat, results)
            print(load(), flush=True)
        if args.only in (None, "batch"):
            batch(scratch, nb, args.batch, not args.no_pdf, results, spawn=args.spawn)
            print(load(), flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
