"""One epoch of prompt learning with full-size untrained ViT-B/16, image-feature caching on and off.

    .venv/bin/python benchmarks/bench_learn.py [--images 1000] [--uncached-images 64] [--device cpu]

With caching, an epoch only runs the text tower (context prompts for every descriptor, forward and
backward) once per batch: its cost depends on the number of batches, so 1,000 images are timed directly
(features of the measured images repeated).  Without caching, every image is read and encoded each epoch:
``--uncached-images`` are timed and the per-image cost is extrapolated to ``--images`` (stated in the table).
Timing does not depend on weight values, so an untrained model is used.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, n: int, side: int = 256) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("normal", "pneumonia")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            img = rng.integers(0, 120 + 100 * k, (side, side)).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def main() -> None:
    import torch

    from napari_vip.core.datasets import load_labelled
    from napari_vip.core.symptoms import load_library
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec
    from napari_vip.models.training import TrainConfig, encode_images, train_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--uncached-images", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--arch", default="ViT-B-16")
    args = ap.parse_args()
    torch.manual_seed(0)
    clip = load_clip(ModelSpec(args.arch, untrained=True), args.device)
    library = load_library()
    descriptors = {"normal": library.get("normal lung") or ["clear lung fields"],
                   "pneumonia": library.get("pneumonia") or ["patchy consolidation"]}
    n_desc = sum(len(v) for v in descriptors.values())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = load_labelled(make_folder(Path(tmp), args.uncached_images))
        idx = np.arange(len(data))
        t0 = time.perf_counter()
        feats = encode_images(clip, data, idx, 32)
        t_enc = time.perf_counter() - t0
        per_image = t_enc / len(data)
        reps = int(np.ceil(args.images / len(data)))
        big_feats = feats.repeat(reps, 1)[:args.images]
        big = data.subset(np.resize(idx, args.images))
        for method in ("vip", "coop"):
            cfg = TrainConfig(method=method, epochs=1, warmup_epochs=0, val_fraction=0.0)
            out = train_prompts(clip, big, descriptors, cfg, np.arange(args.images), train_features=big_feats)
            t_cached = out.history[0].seconds
            cfg_off = TrainConfig(method=method, epochs=1, warmup_epochs=0, val_fraction=0.0, cache_features=False)
            out_off = train_prompts(clip, data, descriptors, cfg_off, idx)
            t_off_small = out_off.history[0].seconds
            t_off = t_off_small / len(data) * args.images
            rows.append((method, t_cached, t_off_small, t_off))
    dev = args.device if args.device != "cpu" else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{torch.get_num_threads()} threads)"
    print(f"{args.arch} untrained, {dev}; ViP with {n_desc} descriptors over 2 classes; batch 32")
    print(f"image encoding (done once when caching): {per_image * 1000:.0f} ms/image "
          f"-> {per_image * args.images:.0f} s for {args.images} images")
    print()
    print(f"| method | epoch, {args.images} images, features cached | epoch, {args.uncached_images} images, "
          f"no cache (measured) | epoch, {args.images} images, no cache (extrapolated) | ratio |")
    print("|---|---|---|---|---|")
    for method, t_c, t_s, t_o in rows:
        print(f"| {method} | {t_c:.1f} s | {t_s:.1f} s | {t_o:.0f} s | {t_o / t_c:.0f}x |")


if __name__ == "__main__":
    main()
