"""Runs benchmark (not a test): ratios measured in one run, on the same notebook (issue 14).

1. **A run through the API vs bare papermill + nbconvert** (target ≤ 1.2×). A real gallery in
   this process (one run worker, no PDF) runs the notebook: ``POST /api/apps/<slug>/runs``, then
   ``GET /api/runs/<id>`` polled every 50 ms until it has finished (queue + confined program +
   execution + report + artifacts + bookkeeping). Against it, in this process:
   ``papermill.execute_notebook`` (``shutdown_kernel="immediate"``, the engine setting nbapps
   uses) followed by nbconvert's ``HTMLExporter`` export of the executed notebook. Sides
   alternate; medians are compared.
2. **A batch of 20 vs the same 20 runs one at a time** (target ≥ 1.7× with 2 workers): the
   time until all 20 runs of one ``{"batch": [...]}`` request have finished with
   ``run_workers=2``, vs 20 requests of one run each, each waited for, with ``run_workers=1``.
   (Each worker keeps its next run program started ahead, so even one worker overlaps a run
   with the next one's start-up when runs queue up.)

    .venv/bin/python benchmarks/runs.py [--notebook PATH] [--repeat 3] [--batch 20] [--json]

Default notebook: the test factory's tiny widget app (an IntSlider; no pandas); ``--notebook
gallery/loan-calculator/loan-calculator.ipynb`` for a demo app with pandas and matplotlib.
The machine is shared: the load is printed before and after.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGS = ["--NbappsServer.check_workers=0", "--NbappsServer.check_unchecked_versions=False",
        "--NbappsServer.run_pdf=False"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} {five:.2f} on {os.cpu_count()} cores"


def notebook(path: str | None) -> Any:
    import nbformat

    if path:
        return nbformat.read(path, as_version=4)
    from tests.nbfactory import make_notebook

    return make_notebook()


def bare(nb_path: Path, workdir: Path) -> float:
    """papermill + nbconvert HTML in this process."""
    import papermill
    from nbconvert import HTMLExporter

    started = time.perf_counter()
    out = workdir / "out.ipynb"
    executed = papermill.execute_notebook(str(nb_path), str(out), cwd=str(workdir),
                                          progress_bar=False, log_output=False,
                                          shutdown_kernel="immediate")
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(executed)
    (workdir / "out.html").write_text(html)
    return time.perf_counter() - started


def wait_all(c: Any, ids: list[int], timeout: float = 900.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    done: dict[int, dict[str, Any]] = {}
    while pending:
        for run_id in sorted(pending):
            run = c.get(f"/api/runs/{run_id}").json()
            if run["state"] not in ("queued", "running"):
                done[run_id] = run
                pending.discard(run_id)
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"runs {sorted(pending)} did not finish")
            time.sleep(0.05)
    return [done[i] for i in ids]


def through_api(g: Any, sets: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    with g.client("vic") as c:
        started = time.perf_counter()
        body = {"parameters": sets[0]} if len(sets) == 1 else {"batch": sets}
        r = c.post("/api/apps/bench/runs", json=body)
        r.raise_for_status()
        runs = wait_all(c, [q["id"] for q in r.json()["runs"]])
        return time.perf_counter() - started, runs


def publish(g: Any, nb: Any) -> None:
    from tests.server_harness import catalog_of, seed_version

    with catalog_of(g) as (cat, store):
        sub = seed_version(cat, store, slug="bench", submitter="ana", title="Bench", nb=nb)
        cat.decide(sub.version.id, "rita", "approve", "ok")


def main() -> int:
    import nbformat

    from tests.server_harness import thread_gallery

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebook", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--only", choices=("single", "batch"), default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    nb = notebook(args.notebook)
    results: dict[str, Any] = {"notebook": args.notebook or "tiny factory notebook"}
    print(load(), flush=True)
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-runs-") as tmp:
        scratch = Path(tmp)
        nb_path = scratch / "app.ipynb"
        nbformat.write(nb, str(nb_path))
        if args.only in (None, "single"):
            with thread_gallery(scratch / "g1", args=[*ARGS, "--NbappsServer.run_workers=1"]) \
                    as g:
                publish(g, nb)
                through_api(g, [{}])  # warm-up: imports, first kernel
                bare(nb_path, scratch)
                api_t, bare_t = [], []
                for _ in range(args.repeat):
                    seconds, runs = through_api(g, [{}])
                    assert runs[0]["state"] == "passed", runs[0]["findings"]
                    api_t.append(seconds)
                    bare_t.append(bare(nb_path, scratch))
            api_m, bare_m = statistics.median(api_t), statistics.median(bare_t)
            results["single"] = {"api_s": api_t, "bare_s": bare_t, "api_median": api_m,
                                 "bare_median": bare_m, "ratio": api_m / bare_m}
            print(f"run through the API: median {api_m:.2f} s {[round(t, 2) for t in api_t]}; "
                  f"papermill + nbconvert: {bare_m:.2f} s {[round(t, 2) for t in bare_t]}; "
                  f"ratio {api_m / bare_m:.2f}x (target <= 1.2x)", flush=True)
        if args.only in (None, "batch"):
            sets = [{} for _ in range(args.batch)]
            times = {}
            for workers in (1, 2):
                with thread_gallery(scratch / f"b{workers}",
                                    args=[*ARGS, f"--NbappsServer.run_workers={workers}"]) as g:
                    publish(g, nb)
                    through_api(g, [{}])  # warm-up
                    if workers == 1:  # serial: one run at a time, each waited for
                        started = time.perf_counter()
                        for one in sets:
                            _, runs = through_api(g, [one])
                            assert runs[0]["state"] == "passed"
                        times[1] = time.perf_counter() - started
                    else:
                        seconds, runs = through_api(g, sets)
                        assert all(r["state"] == "passed" for r in runs)
                        times[2] = seconds
            results["batch"] = {"serial_s": times[1], "parallel_s": times[2],
                                "speedup": times[1] / times[2], "runs": args.batch}
            print(f"{args.batch} runs: one at a time {times[1]:.1f} s, as one batch with 2 "
                  f"workers {times[2]:.1f} s: {times[1] / times[2]:.2f}x (target >= 1.7x)",
                  flush=True)
    print(load(), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
