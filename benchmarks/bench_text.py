"""Text encoding trimmed to the batch's last end token versus open_clip's ``encode_text``, same run.

    .venv/bin/python benchmarks/bench_text.py [--repeats 5] [--images 1000]

Rows: 20 classify prompts through ViT-B-16's text tower (full 77 tokens vs trimmed), and one ViP training
epoch over ``--images`` stored image features (10 descriptors, batch 32) with the context prompts run on the
full 77 tokens vs trimmed.  Untrained weights: timing does not depend on weight values.
"""

from __future__ import annotations

import argparse
import platform

from timing import median_seconds


def main() -> None:
    import numpy as np
    import torch

    from napari_vip.core.datasets import LabelledImages
    from napari_vip.models import prompt_learning
    from napari_vip.models.clip import _create
    from napari_vip.models.text_encoding import encode_text
    from napari_vip.models.training import TrainConfig, train_prompts

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, _, tokenizer = _create("ViT-B-16", "cpu")
    prompts = [f"A chest x-ray with signs of {c} indicated by a red circle." for c in
               ("pneumonia", "effusion", "nodule", "cardiomegaly", "atelectasis")] * 4
    tokens = tokenizer(prompts)
    with torch.no_grad():
        full = median_seconds(lambda: model.encode_text(tokens), args.repeats)
        fast = median_seconds(lambda: encode_text(model, tokens), args.repeats)
        diff = float((model.encode_text(tokens) - encode_text(model, tokens)).abs().max())

    class Clip:  # the parts of ClipModel training uses
        pass

    clip = Clip()
    clip.model, clip.tokenizer, clip.device = model, tokenizer, "cpu"
    clip.logit_scale = lambda: 100.0
    n = args.images
    labels = np.arange(n) % 2
    data = LabelledImages(["normal", "pneumonia"], [""] * n, labels, [None] * n, "stored features")
    feats = torch.nn.functional.normalize(torch.randn(n, 512), dim=-1)
    desc = {"normal": [f"normal finding {i}" for i in range(5)], "pneumonia": [f"consolidation type {i}" for i in range(5)]}
    cfg = TrainConfig(method="vip", epochs=1, warmup_epochs=0, min_steps=0)
    idx = np.arange(n)

    def epoch():
        train_prompts(clip, data, desc, cfg, idx, train_features=feats)

    trimmed_epoch = median_seconds(epoch, 1)
    causal = prompt_learning.TextTower.causal
    prompt_learning.TextTower.causal = property(lambda self: False)  # context prompts on all 77 tokens
    try:
        full_epoch = median_seconds(epoch, 1)
    finally:
        prompt_learning.TextTower.causal = causal
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print("| measure | encode_text (77 tokens) | trimmed | ratio |")
    print("|---|---|---|---|")
    print(f"| 20 prompts, ViT-B-16 text tower (median of {args.repeats}) | {full * 1e3:.1f} ms | {fast * 1e3:.1f} ms "
          f"| {full / fast:.2f}x (max abs diff {diff:.1e}) |")
    print(f"| one ViP epoch, {n} stored features, batch 32 | {full_epoch:.1f} s | {trimmed_epoch:.1f} s "
          f"| {full_epoch / trimmed_epoch:.2f}x |")


if __name__ == "__main__":
    main()
