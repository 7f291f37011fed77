"""Model server on loopback: added round-trip cost, concurrency, and the cost of uploading an image.

    python benchmarks/bench_serve.py [--n 40] [--per-client 10]

Uses the tiny CLIP config of the tests (untrained: timing does not depend on weights), so the figures are the
transport's cost, not the model's.  Prints markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from test_serve import running_server

from napari_vip.models.spec import ModelSpec
from napari_vip.serve.app import ServerConfig
from napari_vip.serve.policy import ServerPolicy
from napari_vip.serve.remote_client import RemoteClient
from napari_vip.worker.classify import ClassifyRequest
from napari_vip.worker.client import WorkerClient

TOKEN = "bench"
CONFIGS = ROOT / "tests" / "configs"


def request(img, arch="vip-tiny-vit.json"):
    return ClassifyRequest(img, [], ["a", "b"], ModelSpec(str(CONFIGS / arch), untrained=True), device="cpu")


def timed(client, req) -> float:
    out = []
    t0 = time.perf_counter()
    job = client.submit(req, on_done=out.append, on_error=out.append)
    client.wait(job, 120, interval=0.0005)
    dt = time.perf_counter() - t0
    assert out and not hasattr(out[0], "kind"), out
    return dt


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--per-client", type=int, default=10)
    args = ap.parse_args()
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    config = ServerConfig(token=TOKEN, policy=ServerPolicy("cpu", [str(CONFIGS)]))
    with running_server(config) as (url, _app):
        local, remote = WorkerClient(), RemoteClient(url, TOKEN)
        local.start()
        try:
            for c in (local, remote):
                for _ in range(3):
                    timed(c, request(img))
            loc = [timed(local, request(img)) for _ in range(args.n)]
            rem = [timed(remote, request(img)) for _ in range(args.n)]
        finally:
            local.shutdown()
        print("| cached classify (tiny CLIP, 256² image) | p50 ms | p95 ms |\n|---|---:|---:|")
        print(f"| local worker process | {pct(loc, 50):.1f} | {pct(loc, 95):.1f} |")
        print(f"| server on loopback | {pct(rem, 50):.1f} | {pct(rem, 95):.1f} |")
        print(f"| added by the server (p50) | {pct(rem, 50) - pct(loc, 50):.1f} | |\n")

        print("| concurrent clients | requests/s | p50 ms | p95 ms |\n|---:|---:|---:|---:|")
        for n in (1, 4, 8):
            lat, clients = [], [RemoteClient(url, TOKEN) for _ in range(n)]
            for c in clients:
                timed(c, request(img))

            def viewer(c, lat):
                for _ in range(args.per_client):
                    lat.append(timed(c, request(img)))

            threads = [threading.Thread(target=viewer, args=(c, lat)) for c in clients]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            for c in clients:
                c.shutdown()
            print(f"| {n} | {len(lat) / wall:.1f} | {pct(lat, 50):.1f} | {pct(lat, 95):.1f} |")

        big = [np.random.default_rng(k).integers(0, 255, (2048, 2048, 3), dtype=np.uint8) for k in range(5)]
        first = [timed(remote, request(b)) for b in big]
        again = [timed(remote, request(b)) for b in big]
        remote.shutdown()
        print("\n| 2048² RGB classify through the server | median ms |\n|---|---:|")
        print(f"| first time (uploads 12 MiB) | {pct(first, 50):.1f} |")
        print(f"| again (referenced by digest) | {pct(again, 50):.1f} |")
        print(f"| upload cost | {pct(first, 50) - pct(again, 50):.1f} |")


if __name__ == "__main__":
    main()
