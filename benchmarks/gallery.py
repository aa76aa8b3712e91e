"""Gallery under load: 1,000 apps, 50 concurrent clients on the gallery page and the search API.

    python benchmarks/gallery.py [--apps 1000] [--clients 50] [--requests 20000] [--seconds 30]
                                 [--db-url URL] [--cache-seconds 2] [--json]

The catalog is filled directly through the repository functions (``Catalog.submit`` +
``decide``: 1,000 live apps from a small vocabulary, so searches and tags match tens of apps).
The server runs as its own process (``python -m nbapps.server.app``) on a free loopback port, so
the load generator does not share its interpreter; the clients are 50 asyncio connections
speaking plain HTTP/1.1 keep-alive (a minimal client: the point is to measure the server, not
an HTTP library). Each client loops over a mix of requests (gallery pages, searches, tag
filters as a logged-in viewer with a session cookie; the search API with a Bearer token) until
``--requests`` are done or ``--seconds`` have passed, whichever comes first; a warm-up of a few
hundred requests is not counted.

Reports p50 / p90 / p99 / max latency and requests per second, overall and per kind, and the
number of errors (any status other than 200). Target: p99 ≤ 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ["sales", "revenue", "forecast", "inventory", "churn", "marketing", "pricing", "budget",
         "supply", "quality", "customer", "region", "weekly", "monthly", "risk", "loan",
         "energy", "hiring", "traffic", "survey", "margin", "stock", "cohort", "funnel",
         "latency", "capacity", "claims", "fraud", "shipping", "returns"]
TAGS = ["finance", "ops", "sales", "marketing", "hr", "risk", "data-quality", "forecasting",
        "reporting", "eu", "us", "apac", "weekly", "exec", "experimental"]


def seed_catalog(db_url: str, n_apps: int) -> dict[str, str]:
    """1,000 live apps by 20 analysts, approved by a reviewer; returns a viewer's credentials."""
    from nbapps.catalog import open_catalog

    rng = random.Random(42)
    cat = open_catalog(db_url)
    try:
        authors = [f"analyst{i:02d}" for i in range(20)]
        for name in authors:
            cat.create_user(name, "analyst", None, actor="bench")
        cat.create_user("reviewer", "reviewer", None, actor="bench")
        cat.create_user("viewer", "viewer", "bench-viewer-password", actor="bench")
        token, _ = cat.create_token("viewer", actor="bench", label="bench")
        t0 = time.perf_counter()
        for i in range(n_apps):
            words = rng.sample(WORDS, 3)
            title = f"{words[0].title()} {words[1]} {i}"
            description = (f"Explore {words[0]} and {words[1]} by {words[2]}: an interactive "
                           f"report with charts and tables, app number {i}.")
            tags = rng.sample(TAGS, 3)
            digest = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
            sub = cat.submit(slug=f"app-{i:04d}", title=title, description=description,
                             tags=tags, sha256=digest,
                             manifest={"title": title, "parameters": []},
                             store_key=f"{digest[:2]}/{digest}.nbapp",
                             submitter=rng.choice(authors), thumbnail=None, size=1000)
            cat.decide(sub.version.id, "reviewer", "approve", "bench")
        print(f"seeded {n_apps} live apps in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    finally:
        cat.close()
    return {"token": token, "password": "bench-viewer-password"}


def start_server(data_dir: Path, db_url: str, cache_seconds: float
                 ) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "nbapps.server.app", "--port=0", f"--data-dir={data_dir}",
           f"--db-url={db_url}", "--log-level=INFO", "--NbappsServer.access_log=False",
           f"--NbappsServer.cache_seconds={cache_seconds}",
           # the seeded versions go straight into the catalog: a check of each (a kernel run)
           # would compete with the server being measured
           "--NbappsServer.check_unchecked_versions=False"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        m = re.search(r"serving at (http://\S+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, m.group(1).rstrip("/")
    proc.kill()
    raise SystemExit("server did not start")


def login_cookie(url: str, password: str) -> str:
    import httpx

    with httpx.Client(base_url=url, follow_redirects=False) as c:
        c.get("/login")
        r = c.post("/login", data={"username": "viewer", "password": password,
                                   "_xsrf": c.cookies["_xsrf"]})
        assert r.status_code == 302, r.text
        # like a browser: the session and the XSRF cookie come back with every request
        return f"nbapps-session={c.cookies['nbapps-session']}; _xsrf={c.cookies['_xsrf']}"


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    done: int = 0


def request_mix(rng: random.Random, n_pages: int) -> tuple[str, str, bool]:
    """(kind, path, api) of the next request."""
    x = rng.random()
    if x < 0.30:
        return "gallery", f"/?page={rng.randint(1, n_pages)}" if rng.random() < .7 else "/", False
    if x < 0.50:
        return "gallery-search", f"/?q={quote(rng.choice(WORDS))}", False
    if x < 0.60:
        return "gallery-tag", f"/?tag={rng.choice(TAGS)}&sort=title", False
    words = " ".join(rng.sample(WORDS, rng.choice((1, 1, 2))))
    return "api-search", f"/api/apps?q={quote(words)}&per_page=24", True


async def client(i: int, host: str, port: int, cookie: str, token: str, stats: Stats,
                 stop_at: float, budget: list[int], warmup: list[int], n_pages: int,
                 think: float) -> None:
    rng = random.Random(i)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop_at and budget[0] > 0:
            kind, path, api = request_mix(rng, n_pages)
            auth = f"Authorization: Bearer {token}" if api else f"Cookie: {cookie}"
            req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n\r\n".encode()
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if m is None:
                raise RuntimeError(f"no Content-Length in {head[:200]!r}")
            await reader.readexactly(int(m.group(1)))
            dt = time.perf_counter() - t0
            if warmup[0] > 0:
                warmup[0] -= 1
                continue
            budget[0] -= 1
            stats.done += 1
            stats.latencies.setdefault(kind, []).append(dt)
            if status != 200:
                stats.errors[kind] = stats.errors.get(kind, 0) + 1
            if think:  # a person reading the page before the next click
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def summarize(stats: Stats, elapsed: float) -> dict[str, object]:
    out: dict[str, object] = {}
    everything = [x for v in stats.latencies.values() for x in v]
    for kind, values in sorted(stats.latencies.items()) + [("all", everything)]:
        out[kind] = {
            "requests": len(values),
            "errors": sum(stats.errors.values()) if kind == "all" else stats.errors.get(kind, 0),
            "p50_ms": round(pct(values, 50) * 1000, 2),
            "p90_ms": round(pct(values, 90) * 1000, 2),
            "p99_ms": round(pct(values, 99) * 1000, 2),
            "max_ms": round(max(values) * 1000, 2) if values else None,
            "mean_ms": round(statistics.fmean(values) * 1000, 2) if values else None,
        }
    out["requests_per_second"] = round(len(everything) / elapsed, 1)
    out["elapsed_s"] = round(elapsed, 2)
    return out


async def run_load(url: str, cookie: str, token: str, clients: int, requests: int,
                   seconds: float, n_pages: int, think: float = 0.0) -> dict[str, object]:
    parts = urlsplit(url)
    stats = Stats()
    budget = [requests]
    warmup = [min(500, requests // 10)]
    t0 = time.monotonic()
    stop_at = t0 + seconds
    await asyncio.gather(*(client(i, parts.hostname or "127.0.0.1", parts.port or 80, cookie,
                                  token, stats, stop_at, budget, warmup, n_pages, think)
                           for i in range(clients)))
    return summarize(stats, time.monotonic() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20000, help="upper bound of requests")
    parser.add_argument("--seconds", type=float, default=30.0, help="upper bound of time")
    parser.add_argument("--db-url", default=None, help="catalog URL (default: SQLite in a temp "
                        "data dir; give an empty PostgreSQL database to bench that)")
    parser.add_argument("--cache-seconds", type=float, default=5.0,
                        help="the server's listing cache (0 = every request hits the database)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause of each client between requests (0: back to back, the "
                             "hardest case; ~1000 models people clicking)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nbapps-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        db_url = args.db_url or f"sqlite:///{data_dir / 'nbapps.db'}"
        creds = seed_catalog(db_url, args.apps)
        proc, url = start_server(data_dir, db_url, args.cache_seconds)
        try:
            cookie = login_cookie(url, creds["password"])
            n_pages = max(1, -(-args.apps // 24))
            cpu0 = cpu_seconds(proc.pid)
            result = asyncio.run(run_load(url, cookie, creds["token"], args.clients,
                                          args.requests, args.seconds, n_pages,
                                          args.think_ms / 1000))
            cpu = cpu_seconds(proc.pid) - cpu0
            done = result["all"]["requests"]  # type: ignore[index]
            # server CPU per request: independent of how busy the machine is with other work
            result["server_cpu_ms_per_request"] = round(1000 * cpu / max(1, done), 3)
            result["load_average"] = os.getloadavg()[0]
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    result["config"] = {"apps": args.apps, "clients": args.clients, "think_ms": args.think_ms,
                        "cache_seconds": args.cache_seconds, "cpus": os.cpu_count(),
                        "db": "postgresql" if args.db_url else "sqlite"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'kind':<16}{'requests':>9}{'errors':>7}{'p50 ms':>9}{'p90 ms':>9}"
              f"{'p99 ms':>9}{'max ms':>9}")
        for kind, row in result.items():
            if isinstance(row, dict) and "p50_ms" in row:
                print(f"{kind:<16}{row['requests']:>9}{row['errors']:>7}{row['p50_ms']:>9}"
                      f"{row['p90_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}")
        print(f"requests/s: {result['requests_per_second']}  (elapsed {result['elapsed_s']} s)")
        print(f"server CPU per request: {result['server_cpu_ms_per_request']} ms "
              f"(≈ {1000 / max(result['server_cpu_ms_per_request'], 1e-6):.0f} req/s per core); "
              f"machine load average {result['load_average']:.1f} on {os.cpu_count()} cores")
    all_row = result["all"]
    assert isinstance(all_row, dict)
    return 0 if all_row["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
