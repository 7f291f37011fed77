"""Volume timings in one run (prints a table): image encoders at 1024x1024 and propagation per slice.

    .venv/bin/python benchmarks/bench_volume.py [--device cpu] [--slices 64] [--size 1024] [--archs ...]

Rows:
1. image-encoder time of one 1024x1024 plane: SAM vit_b (``SamModel.embed``) and SAM 2.1 hiera-t/s/b+
   (``Sam2Model.embed``), same input, median of ``--repeats``;
2. propagation of one object through a ``--slices`` phantom volume: SAM 2.1 hiera-t video tracking
   (``propagate_sam2``) vs SAM vit_b slice by slice (``propagate_sam1``, embeddings computed as it goes);
   seconds per slice.

Full-size untrained weights: timing does not depend on weight values.  On a 2-core CPU use fewer slices
(``--slices 8``) and say so beside the figures.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np


def phantom(z: int, size: int) -> np.ndarray:
    """``(z, size, size)`` CT-like volume: a body disc and a ball whose cross-section changes along z."""
    yy, xx = np.mgrid[:size, :size]
    vol = np.full((z, size, size), -1000.0, np.float32)
    vol[:, (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2] = 40.0
    for k in range(z):
        r = 0.2 * size * np.sqrt(max(0.0, 1 - ((k - z / 2) / (z / 2 + 1)) ** 2))
        vol[k][(yy - 0.45 * size) ** 2 + (xx - 0.55 * size) ** 2 < r ** 2] = 300.0
    return vol


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    import torch

    from napari_vip.models.propagation import SlicePrompt, propagate_sam1, propagate_sam2, volume_to_rgb
    from napari_vip.models.sam import SamSpec, load_sam
    from napari_vip.models.sam2_family import Sam2Spec, load_sam2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=["vit_b", "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+"])
    args = ap.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    rng = np.random.default_rng(0)
    plane = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    models = {}
    print("| image encoder | seconds per 1024² plane |\n|---|---|")
    for arch in args.archs:
        if arch.startswith("vit"):
            m = load_sam(SamSpec(arch, untrained=True), args.device)
        else:
            m = load_sam2(Sam2Spec(arch, untrained=True), args.device)
        models[arch] = m
        m.embed(plane)  # warm-up
        print(f"| {arch} | {timed(lambda m=m: m.embed(plane), args.repeats):.2f} |", flush=True)

    vol = phantom(args.slices, args.size)
    rgb = volume_to_rgb(vol, (-200.0, 400.0))
    key = args.slices // 2
    box = (0.3 * args.size, 0.2 * args.size, 0.75 * args.size, 0.7 * args.size)
    print(f"\n| propagation ({args.slices} slices of {args.size}²) | slices | seconds per slice |\n|---|---|---|")
    if "sam2.1_hiera_t" in models:
        t0 = time.perf_counter()
        n = sum(1 for _ in propagate_sam2(models["sam2.1_hiera_t"], rgb, [SlicePrompt(key, box_xyxy=box)],
                                          stop_when_empty=False))
        print(f"| SAM 2.1 hiera-t video predictor | {n} | {(time.perf_counter() - t0) / n:.2f} |", flush=True)
    if "vit_b" in models:
        sam = models["vit_b"]
        t0 = time.perf_counter()
        n = sum(1 for _ in propagate_sam1(sam, lambda j: sam.embed(rgb[j]), rgb, SlicePrompt(key, box_xyxy=box),
                                          iou_threshold=-1e9, stop_when_empty=False))
        print(f"| SAM vit_b slice by slice | {n} | {(time.perf_counter() - t0) / n:.2f} |", flush=True)


if __name__ == "__main__":
    main()
