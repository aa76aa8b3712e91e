"""Bundle upload time to S3: temporary object + move (before) vs one direct PUT (now).

    .venv/bin/python benchmarks/store_s3.py [--rounds 5] [--sizes 65536,1048576,8388608]

Not a test: it prints figures measured side by side in one run against a real S3-compatible
server on loopback (moto's server mode, :mod:`tests.s3`), with s3fs. Each round stores a new
source (``app.ipynb`` + one incompressible data file of the given size) once through each write
path, alternating which goes first; the time is :meth:`nbapps.store.BundleStore.put_source`
end to end (look, write, and for the old path the copy and delete), and the requests and
bytes each path sent are counted from the server's log. The machine may be shared: the load
average is printed at the start and the end.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nbapps.store import BundleStore  # noqa: E402
from tests.nbfactory import make_notebook  # noqa: E402
from tests.s3 import MotoServer  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def source(size: int) -> dict[str, bytes]:
    import nbformat

    nb = make_notebook(meta={"title": "Bench", "description": "upload benchmark"})
    return {"app.ipynb": nbformat.writes(nb).encode(), "data.bin": os.urandom(size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="65536,1048576,8388608",
                        help="data file sizes in bytes, comma-separated")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    print(f"load average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="nbapps-bench-s3-") as tmp:
        server = MotoServer(Path(tmp) / "moto.log")
        try:
            server.start()
            stores = {"temp+move": BundleStore(server.new_bucket_url(), direct_put=False,
                                               **server.storage_options()),
                      "direct": BundleStore(server.new_bucket_url(), direct_put=True,
                                            **server.storage_options())}
            print(f"{'size':>10} {'path':>10} {'median ms':>10} {'min ms':>8} "
                  f"{'requests':>9} {'PUTs':>5}")
            for size in sizes:
                times: dict[str, list[float]] = {name: [] for name in stores}
                counts: dict[str, tuple[int, int]] = {}
                for r in range(args.rounds):
                    order = list(stores) if r % 2 == 0 else list(reversed(stores))
                    for name in order:
                        store = stores[name]
                        files = source(size)
                        server.mark()
                        before = len(server.requests())
                        t0 = time.perf_counter()
                        store.put_source(files)
                        times[name].append(time.perf_counter() - t0)
                        server.mark()
                        seen = server.requests()[before:]
                        bucket = f"/{store.root.split('/')[0]}"
                        mine = [(m, p) for m, p, _ in seen if p.startswith(bucket)]
                        counts[name] = (len(mine), sum(1 for m, _ in mine if m == "PUT"))
                for name in stores:
                    ms = [1000 * t for t in times[name]]
                    n_req, n_put = counts[name]
                    print(f"{size:>10} {name:>10} {statistics.median(ms):>10.1f} "
                          f"{min(ms):>8.1f} {n_req:>9} {n_put:>5}", flush=True)
                ratio = statistics.median(times["temp+move"]) / statistics.median(times["direct"])
                print(f"{size:>10} {'ratio':>10} {ratio:>10.2f}x", flush=True)
        finally:
            server.stop()
    print(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
