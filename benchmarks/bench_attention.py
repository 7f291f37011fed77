"""Attention-map benchmark: latency per map for full-size untrained ViT-B/16 towers (weights do not change timing).

Two towers of the same size: open_clip's ViT-B-16 and a BiomedCLIP-like timm ``vit_base_patch16_224`` image
tower (pool '', linear projection; with a small open_clip text tower, since BiomedCLIP's PubMedBERT needs
the hub).  For each: the plain image embedding (``encode_image`` on a preprocessed batch of 1: the
reference) and one map per method (``compute_map`` on a 256x256 render, upsampled to a 512x512 frame:
preprocessing, forward/backward, hooks and upsampling included; the text embedding is cached, as in use).
Runs are interleaved (reference, rollout, gradcam, similarity, reference, ...) after one warm-up each; the
table gives the minimum and median of ``--repeats`` rounds and their ratios to the reference of the same
tower in the same run, which is what to compare across machines (the CPU may be shared and noisy).

Run:
    .venv/bin/python benchmarks/bench_attention.py [--device cpu|cuda|auto] [--repeats 5] [--towers vit timm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("rollout", "gradcam", "similarity")
PROMPT = "A chest x-ray with signs of pneumonia indicated by a red circle."

TIMM_B16 = {
    "embed_dim": 512,
    "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False, "timm_pool": "",
                   "timm_proj": "linear", "image_size": 224},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _interleaved(fns: dict, repeats: int, device: str) -> dict:
    """Run each function once to warm up, then ``repeats`` rounds of all of them in turn (so load changes
    on a shared machine hit all alike).  Returns name -> list of seconds."""
    for fn in fns.values():
        fn()
    _sync(device)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return times


def bench_tower(name: str, arch: str, device: str, repeats: int) -> list[tuple]:
    import torch

    from napari_vip.core.markers import Marker, render_marker
    from napari_vip.models.attention import compute_map
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    torch.manual_seed(0)
    t = time.perf_counter()
    clip = load_clip(ModelSpec(arch, untrained=True), device)
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    full = (rng.random((512, 512, 3)) * 255).astype(np.uint8)
    rendered = render_marker(full, Marker((200, 180, 300, 260), "circle"))
    x = clip.image_batch([rendered])
    clip.encode_texts([PROMPT])

    def reference():
        with torch.inference_mode():
            clip.model.encode_image(x)

    fns = {"encode_image (reference)": reference}
    for method in METHODS:
        fns[f"{method} map"] = (lambda m=method: compute_map(clip, rendered, m, PROMPT, out_hw=(512, 512)))
    times = _interleaved(fns, repeats, device)
    ref_min, ref_med = min(times["encode_image (reference)"]), statistics.median(times["encode_image (reference)"])
    rows = [(name, "model build (untrained)", load_s, float("nan"), float("nan"), float("nan"))]
    for step, ts in times.items():
        rows.append((name, step, min(ts), statistics.median(ts), min(ts) / ref_min, statistics.median(ts) / ref_med))
    return rows


def main(argv=None) -> int:
    import torch

    from napari_vip.models.device import resolve_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--towers", nargs="+", default=["vit", "timm"], choices=["vit", "timm"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        timm_cfg = Path(tmp) / "bench-biomedclip-like-b16.json"
        timm_cfg.write_text(json.dumps(TIMM_B16))
        archs = {"vit": ("open_clip ViT-B-16", "ViT-B-16"), "timm": ("timm vit_base_patch16_224", str(timm_cfg))}
        rows = []
        for key in args.towers:
            rows += bench_tower(*archs[key], device, args.repeats)
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"# attention maps, batch 1, 256x256 render -> 512x512 map; device {device} ({where}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"median of {args.repeats}")
    print(f"| {'tower':<26} | {'step':<26} | {'min s':>7} | {'median s':>8} | {'min/ref':>7} | {'med/ref':>7} |")
    print(f"|{'-' * 28}|{'-' * 28}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 9}|")
    for tower, step, lo, med, r_lo, r_med in rows:
        if step.startswith("model build"):
            print(f"| {tower:<26} | {step:<26} | {lo:7.2f} | {'':>8} | {'':>7} | {'':>7} |")
        else:
            print(f"| {tower:<26} | {step:<26} | {lo:7.3f} | {med:8.3f} | {r_lo:7.2f} | {r_med:7.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
