"""Gallery page throughput through nginx: one replica vs two, in the same run.

    .venv/bin/python benchmarks/replicas.py [--apps 200] [--clients 16] [--seconds 20]
                                            [--rounds 2] [--json]

The topology of ``tests/test_replicas_lb.py``: a real PostgreSQL (the catalog, filled with
``--apps`` live apps as ``benchmarks/gallery.py`` does), two gallery processes with their own data
dirs and one cookie secret, and Debian's nginx in front with the config ``nbapps deploy
nginx-config`` prints. Each phase starts nginx afresh, with one replica in its upstream or both
(alternated, ``--rounds`` times); ``--clients`` keep-alive HTTP/1.1 connections to nginx, each
logged in as the viewer with a session of its own, request back to back for ``--seconds``: the
gallery's home page and app frames (``/app/<slug>/open``: the catalog entry and a ticket; no
runner starts, the frame's iframe is not fetched). Gallery pages carry no affinity key, so nginx
spreads them round robin.

Reports requests/s, p50/p99 per phase and the ratio two/one (median over the rounds), with
the replicas' CPU per request, the load average and the busiest other processes (the machine may
be shared: on 2 cores the load generator, nginx and the replicas compete for the same cores).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serve import busiest_others  # noqa: E402

from gallery import cpu_seconds, login_cookie, pct, seed_catalog  # noqa: E402
from tests.nginx_lb import running_nginx  # noqa: E402
from tests.pg import PostgresServer, find_pg_bin  # noqa: E402
from tests.server_harness import start_process, stop_process  # noqa: E402

SERVER_ARGS = ["--NbappsServer.access_log=False", "--NbappsServer.xheaders=True",
               # seeded versions go straight into the catalog: no check run competes
               "--NbappsServer.check_unchecked_versions=False",
               "--NbappsServer.check_workers=0"]


async def _client(i: int, url: str, cookie: str, n_apps: int, stop_at: float,
                  latencies: dict[str, list[float]], errors: list[int]) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random(i)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < stop_at:
            if rng.random() < 0.5:
                kind, path = "home", "/"
            else:
                kind, path = "app-frame", f"/app/app-{rng.randrange(n_apps):04d}/open"
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie}\r\n"
                         "\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if m is None:
                raise RuntimeError(f"no Content-Length in {head[:300]!r}")
            await reader.readexactly(int(m.group(1)))
            latencies.setdefault(kind, []).append(time.perf_counter() - t0)
            if head[9:12] != b"200":
                errors.append(int(head[9:12]))
            if re.search(rb"\r\nconnection: *close", head, re.I):  # nginx's keepalive_requests
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _load(url: str, cookies: list[str], n_apps: int, seconds: float
                ) -> tuple[dict[str, list[float]], list[int], float]:
    latencies: dict[str, list[float]] = {}
    errors: list[int] = []
    # warm-up (templates, caches, nginx's upstream connections), not counted
    await asyncio.gather(*(_client(i, url, c, n_apps, time.monotonic() + 2, {}, [])
                           for i, c in enumerate(cookies)))
    t0 = time.monotonic()
    await asyncio.gather(*(_client(i, url, c, n_apps, t0 + seconds, latencies, errors)
                           for i, c in enumerate(cookies)))
    return latencies, errors, time.monotonic() - t0


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (nginx's master and workers)."""
    root = psutil.Process(pid)
    return sum(cpu_seconds(p.pid) for p in [root, *root.children(recursive=True)])


def _phase(tmp: Path, name: str, replicas: list[tuple[subprocess.Popen[bytes], str]],
           n_clients: int, n_apps: int, seconds: float, password: str) -> dict[str, object]:
    with running_nginx(tmp / f"nginx-{name}", [url for _, url in replicas]) as lb:
        cookies = [login_cookie(lb.url, password) for _ in range(n_clients)]
        cpu0 = [cpu_seconds(proc.pid) for proc, _ in replicas]
        nginx0, client0 = _tree_cpu(lb.process.pid), time.process_time()
        load0 = os.getloadavg()[0]
        latencies, errors, elapsed = asyncio.run(_load(lb.url, cookies, n_apps, seconds))
        cpu = [cpu_seconds(proc.pid) - c0 for (proc, _), c0 in zip(replicas, cpu0, strict=True)]
        nginx_cpu, client_cpu = _tree_cpu(lb.process.pid) - nginx0, time.process_time() - client0
        served = {}
        for entry in lb.entries():
            for upstream in entry.upstreams[-1:]:
                served[upstream] = served.get(upstream, 0) + 1
    everything = [x for v in latencies.values() for x in v]
    return {
        "replicas": len(replicas),
        "requests": len(everything),
        "errors": len(errors),
        "requests_per_second": round(len(everything) / elapsed, 1),
        "p50_ms": round(pct(everything, 50) * 1000, 2),
        "p99_ms": round(pct(everything, 99) * 1000, 2),
        "per_kind_p50_ms": {k: round(pct(v, 50) * 1000, 2) for k, v in sorted(latencies.items())},
        "replica_cpu_ms_per_request": round(1000 * sum(cpu) / max(1, len(everything)), 3),
        "replica_cpu_s": [round(c, 1) for c in cpu],
        # the load generator and nginx share the same cores (warm-up included in both)
        "client_cpu_s": round(client_cpu, 1),
        "nginx_cpu_s": round(nginx_cpu, 1),
        "requests_per_replica": served,
        "load_average_at_start": round(load0, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of (one replica, two replicas)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found; run scripts/install-system-deps.sh")
    others_before = busiest_others()
    pg = PostgresServer(bin_dir).start()
    procs = []
    phases: list[dict[str, object]] = []
    try:
        _, db_url = pg.fresh_database()
        creds = seed_catalog(db_url, args.apps)
        env = {"NBAPPS_COOKIE_SECRET": secrets.token_hex(32)}
        with tempfile.TemporaryDirectory(prefix="nbapps-bench-replicas-") as tmp_name:
            tmp = Path(tmp_name)
            for i in range(2):
                data_dir = tmp / f"replica{i}"
                data_dir.mkdir()
                procs.append(start_process(data_dir, db_url, SERVER_ARGS, env=env))
            # first requests of a replica (templates, catalog caches) are paid before, not in
            # the first phase; then alternated, so what else runs on the machine hits both alike
            _phase(tmp, "warm-up", procs, args.clients, args.apps, 5.0, creds["password"])
            for r in range(args.rounds):
                for n in (1, 2):
                    phases.append(_phase(tmp, f"{n}-{r}", procs[:n], args.clients, args.apps,
                                         args.seconds, creds["password"]))
    finally:
        for proc, _ in procs:
            stop_process(proc)
        pg.stop()
    others_after = busiest_others()

    rates = [float(str(p["requests_per_second"])) for p in phases]
    ratios = [round(rates[i + 1] / rates[i], 2) for i in range(0, len(rates), 2)]
    result: dict[str, object] = {
        "phases": phases,
        "ratio_two_over_one": statistics.median(ratios),
        "ratio_per_round": ratios,
        "config": {"apps": args.apps, "clients": args.clients, "seconds": args.seconds,
                   "rounds": args.rounds, "cpus": os.cpu_count()},
        "busy_before": others_before, "busy_after": others_after,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for row in phases:
            print(f"{row['replicas']} replica(s): {row['requests_per_second']} req/s "
                  f"(p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, {row['errors']} errors; "
                  f"replica CPU {row['replica_cpu_ms_per_request']} ms/request, "
                  f"{row['replica_cpu_s']} s; nginx {row['nginx_cpu_s']} s, "
                  f"load generator {row['client_cpu_s']} s; load average "
                  f"{row['load_average_at_start']}; served {row['requests_per_replica']})")
        print(f"two / one: {result['ratio_two_over_one']}x (median of the rounds {ratios}; "
              f"{os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.2f} at the end)")
        for line in others_before:
            print(f"  busy at the start: {line}")
        for line in others_after:
            print(f"  busy at the end:   {line}")
    return 0 if all(p["errors"] == 0 for p in phases) else 1

if __name__ == "__main__":
    sys.exit(main())
