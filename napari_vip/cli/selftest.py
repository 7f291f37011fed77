"""``napari-vip selftest``: check that the background worker starts, answers, reports progress and cancels."""

from __future__ import annotations

import time

from ..models.precision import PRECISIONS
from .common import emit


def add_parser(sub) -> None:
    p = sub.add_parser("selftest", help="check the background worker process (no model needed)")
    p.add_argument("--device", default="auto", help="also resolve this device (auto|cuda|mps|cpu)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="also say what this precision means per model family on the device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..models.device import resolve_device
    from ..models.precision import resolve_precision
    from ..worker.client import WorkerClient
    from ..worker.selftest import SelfTestRequest

    if getattr(args, "server", None):
        from ..serve.remote_client import RemoteClient
        from ..serve.token import read_token

        client = RemoteClient(args.server, read_token(args.token_file))
    else:
        client = WorkerClient()
    done, failed, steps = [], [], []
    try:
        t0 = time.perf_counter()
        client.start()
        job = client.submit(SelfTestRequest(steps=3, tag="selftest"), on_done=done.append, on_error=failed.append,
                            on_progress=steps.append)
        client.wait(job, timeout=120)
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        job = client.submit(SelfTestRequest(steps=1, step_seconds=0.0), on_done=done.append, on_error=failed.append)
        client.wait(job, timeout=60)
        round_trip = time.perf_counter() - t1
        slow = client.submit(SelfTestRequest(steps=1000, step_seconds=0.01), on_done=done.append,
                             on_error=failed.append)
        client.cancel(slow)
        client.wait(slow, timeout=60)
    finally:
        client.shutdown()
    cancelled = [f.kind for f in failed] == ["cancelled"]
    ok = len(done) == 2 and cancelled and len(steps) == 4
    result = {"ok": ok, "worker_pid": done[0].pid if done else None, "start_and_first_job_s": round(first, 3),
              "round_trip_ms": round(round_trip * 1000, 1), "progress_messages": len(steps),
              "cancel_works": cancelled, "device": resolve_device(args.device)}
    result["precision"] = {fam: resolve_precision(args.precision, result["device"], fam) for fam in ("clip", "sam", "sam2")}
    text = "\n".join(f"{k}: {v}" for k, v in result.items())
    emit(result, args.json, text)
    return 0 if ok else 1
