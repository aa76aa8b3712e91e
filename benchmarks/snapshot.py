"""Snapshot pages (issue 14 item 4) against a static file of the same gallery, 50 clients at once.

    .venv/bin/python benchmarks/snapshot.py [--clients 50] [--rounds 10]

Not a test: it prints figures measured side by side in one run, on this machine (which may be
shared: the load average is printed at the start and the end). A gallery serving apps (in a
thread of this process) gets an app with ``snapshot: true`` approved; once its snapshot run has
passed, a client process sends rounds of ``--clients`` simultaneous requests (a viewer's API
token, new connections each round), the kinds interleaved round by round:

- **snapshot**: ``/app/<slug>/snapshot``, the gallery page a viewer opens (no kernel, no runner);
- **report**: the snapshot's report document that page frames (from the in-memory cache);
- **static**: ``/static/app_frame.css``, a static file served by the same gallery.

Target (issue 14): a snapshot page within 3x a static file from the gallery, with 50 clients.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(base: str, token: str, paths: dict[str, str], clients: int,
                 rounds: int) -> dict[str, dict[str, list[float]]]:
    import httpx

    out: dict[str, dict[str, list[float]]] = {k: {"lat": [], "wall": []} for k in paths}
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    for _ in range(rounds):
        for kind, path in paths.items():
            async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                         timeout=60) as c:
                async def one(c: httpx.AsyncClient = c, path: str = path) -> float:
                    t0 = time.perf_counter()
                    r = await c.get(path)
                    assert r.status_code == 200, (path, r.status_code, r.text[:200])
                    return time.perf_counter() - t0

                t0 = time.perf_counter()
                lat = await asyncio.gather(*(one() for _ in range(clients)))
                out[kind]["wall"].append(time.perf_counter() - t0)
                out[kind]["lat"].extend(lat)
    return out


def client_main(spec: str) -> int:
    args = json.loads(spec)
    result = asyncio.run(_drive(args["base"], args["token"], args["paths"], args["clients"],
                                args["rounds"]))
    print(json.dumps(result))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="simultaneous requests")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each kind")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the load process (internal)
    args = parser.parse_args()
    if args.client:
        return client_main(args.client)
    import re

    import httpx

    from tests.server_harness import build_archive
    from tests.test_app_browser import _approve_api, _submit, serving_gallery
    from tests.test_snapshots import _notebook, _wait_snapshots

    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-snapshot-") as tmp, \
            serving_gallery(Path(tmp)) as g:
        sub = _submit(g, build_archive(Path(tmp) / "app", _notebook()))
        _approve_api(g, sub["id"])
        slug = sub["slug"]
        _wait_snapshots(g, slug, 2)
        token = g.users["vic"].token
        page = httpx.get(f"{g.url}/app/{slug}/snapshot", timeout=60,
                         headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200, page.text[:300]
        report = re.search(r'id="snapshot-view"[^>]* src="([^"]+)"', page.text).group(1)
        paths = {"snapshot": f"/app/{slug}/snapshot", "report": report.replace("&amp;", "&"),
                 "static": "/static/app_frame.css"}
        sizes = {k: len(httpx.get(g.url + p, headers={"Authorization": f"Bearer {token}"},
                                  timeout=60).content) for k, p in paths.items()}
        spec = json.dumps({"base": g.url, "token": token, "paths": paths,
                           "clients": args.clients, "rounds": args.rounds})
        print(f"gallery ready; driving {args.clients} clients x {args.rounds} rounds; "
              f"load {load()}", flush=True)
        done = subprocess.run([sys.executable, __file__, "--client", spec], cwd=REPO,
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
    ms = (lambda s: f"{s * 1000:7.1f} ms")  # noqa: E731
    for kind, r in result.items():
        print(f"{kind:9s} ({sizes[kind]:6d} B): p50 {ms(statistics.median(r['lat']))}  "
              f"p95 {ms(pct(r['lat'], 0.95))}  round of {args.clients} "
              f"{ms(statistics.median(r['wall']))}")
    static = result["static"]
    for kind in ("snapshot", "report"):
        r = result[kind]
        p50 = statistics.median(r["lat"]) / statistics.median(static["lat"])
        p95 = pct(r["lat"], 0.95) / pct(static["lat"], 0.95)
        rnd = statistics.median(r["wall"]) / statistics.median(static["wall"])
        print(f"{kind} / static: p50 {p50:.2f}x  p95 {p95:.2f}x  round {rnd:.2f}x"
              "   (target <= 3x)")
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
