"""Segmentation evaluation: one image's ten prompt types, the image encoded once and decoded per text (what
``evaluate-seg`` does) against ``predict`` per text; and the prompt ladder of one mask.

Run: ``.venv/bin/python benchmarks/bench_evaluate_seg.py [--size 352]``.  The model is the released CLIPSeg
architecture (``CIDAS/clipseg-rd64-refined``'s config) with untrained weights: timing does not depend on weight
values.  Prints a table of median seconds and the ratio.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from napari_vip.core.prompt_ladder import choose_prompt, prompt_ladder
    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.worker.segmentation_eval.sample import predict_logits

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    mask = np.zeros((480, 640), bool)
    mask[100:220, 400:560] = True
    ladder = prompt_ladder(image, mask, "polyp")
    import random

    texts = [choose_prompt(ladder, k, random.Random(0)) for k in ladder]
    model = load_vlsm(VlsmSpec("clipseg", untrained=True), args.device)
    once = median_seconds(lambda: predict_logits(model, image, texts), args.repeats, warmup=True)
    each = median_seconds(lambda: [model.predict(image, t) for t in texts], args.repeats, warmup=True)
    lad = median_seconds(lambda: prompt_ladder(image, mask, "polyp"), args.repeats, warmup=True)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, image 480x640, CLIPSeg "
          f"{model.input_size}x{model.input_size} (released architecture, untrained), {len(texts)} prompt types")
    print(f"{'what':48s} {'median s':>9s}")
    print(f"{'encode once, decode 10 texts (evaluate-seg)':48s} {once:9.3f}")
    print(f"{'predict() per text, 10 texts':48s} {each:9.3f}")
    print(f"{'ratio predict-per-text / encode-once':48s} {each / once:9.2f}x")
    print(f"{'prompt ladder of one mask (480x640)':48s} {lad:9.3f}")


if __name__ == "__main__":
    main()
