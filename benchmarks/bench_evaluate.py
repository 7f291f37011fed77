"""Evaluation benchmark: image-conditions per second for N samples x the paper's 8 conditions.

Compares, in one run and on the same synthetic labelled set (512x512 gray PNGs with a box each):
the local run (render once per distinct image, threads rendering ahead of batched inference); a 2-worker Dask
LocalCluster; the released code's loop (one image at a time: read, draw, preprocess, encode, for every
condition); and a second local run with every embedding cached.  Full-size ViT-B/16 with random weights saved as
a checkpoint (weights do not change timing).

    .venv/bin/python benchmarks/bench_evaluate.py [--samples 1000] [--device cpu] [--precision auto] [--no-dask]

``--precision`` (``auto|fp32|bf16|fp16``) applies to the local and Dask runs; the released loop runs in float32
as the released code does.  The header names what ``auto`` resolved to.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONDITIONS = ("none", "crop", "bbox", "bbox+text", "circle", "circle+text", "arrow", "arrow+text")


def make_data(root: Path, n: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = ["path,label,x0,y0,x1,y1,patient_id"]
    for i in range(n):
        img = (rng.random((512, 512)) * 255).astype(np.uint8)
        x0, y0 = rng.integers(20, 400, 2)
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append(f"{i}.png,{'nodule' if i % 2 else 'normal'},{x0},{y0},{x0 + 60},{y0 + 60},p{i}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


def released_loop(spec, data_csv: Path, device: str) -> float:
    """Seconds for the released code's loop: per condition, per image: read, draw, preprocess, encode alone."""
    import torch

    from napari_vip.core.eval_conditions import parse_conditions
    from napari_vip.core.prompts import build_prompt
    from napari_vip.core.recipes import render_for_model
    from napari_vip.io.eval_loading import load_eval_data
    from napari_vip.io.open_image import plane_from_file
    from napari_vip.models.clip import load_clip

    clip = load_clip(spec, device)
    data = load_eval_data(data_csv)
    t0 = time.perf_counter()
    for c in parse_conditions(CONDITIONS):
        text = clip.encode_texts([build_prompt(k, c.suffix()) for k in data.classes])
        for s in data.samples:
            plane = plane_from_file(s.path).data
            image = render_for_model(plane, c.marker(s.box_xyxy), "paper")
            with torch.inference_mode():
                f = clip.model.encode_image(clip.image_batch([image]))
                f = torch.nn.functional.normalize(f.float(), dim=-1)
            clip.probabilities(f, text)
    return time.perf_counter() - t0


def timed_run(req) -> tuple[float, int]:
    from napari_vip.worker.engine import Engine

    engine = Engine()
    engine.clip(req.model, req.device)  # model load is not part of the figure
    t0 = time.perf_counter()
    res = engine.run(req)
    return time.perf_counter() - t0, res.embedded


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    args = p.parse_args()

    import torch

    from napari_vip.models.clip import _create
    from napari_vip.models.spec import ModelSpec
    from napari_vip.worker.evaluate import EvaluateRequest

    tmp = Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    try:
        torch.manual_seed(0)
        model, _, _ = _create("ViT-B-16", "cpu")
        torch.save(model.state_dict(), tmp / "vitb16.pt")
        del model
        spec = ModelSpec("ViT-B-16", checkpoint=str(tmp / "vitb16.pt"))
        fast = ModelSpec("ViT-B-16", checkpoint=str(tmp / "vitb16.pt"), precision=args.precision)
        (tmp / "data").mkdir()
        data = make_data(tmp / "data", args.samples)
        total = args.samples * len(CONDITIONS)

        def req(out, **kw):
            return EvaluateRequest(str(data), fast, CONDITIONS, out_dir=str(tmp / out), bootstrap=0,
                                   batch_size=args.batch_size, device=args.device, **kw)

        rows = []
        first, embedded = timed_run(req("local"))
        rows.append(("local, first run", first, embedded))
        cached, embedded = timed_run(req("local"))
        rows.append(("local, everything cached", cached, embedded))
        if not args.no_dask:
            from distributed import LocalCluster

            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
                t, embedded = timed_run(req("dask", scheduler=cl.scheduler_address))
            rows.append(("Dask LocalCluster, 2 workers", t, embedded))
        rows.append(("released code's loop", released_loop(spec, data, args.device), total))
        from napari_vip.models.device import resolve_device
        from napari_vip.models.precision import resolve_precision

        used = resolve_precision(args.precision, resolve_device(args.device), "clip")
        print(f"{args.samples} samples x {len(CONDITIONS)} conditions = {total} image-conditions, ViT-B-16, "
              f"{args.device}, {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
              f"precision {args.precision} ({used}) for the local runs, fp32 for the released loop")
        print(f"{'run':32s} {'seconds':>9s} {'image-cond/s':>13s} {'embedded':>9s}")
        for name, t, n in rows:
            print(f"{name:32s} {t:9.2f} {total / t:13.1f} {n:9d}")
        released = rows[-1][1]
        print(f"local first run vs released loop: {released / first:.1f}x; cached rerun vs first run: "
              f"{first / cached:.0f}x; cached rerun vs released loop: {released / cached:.0f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
