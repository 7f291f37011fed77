"""CoTexNet against plain CLIPSeg, same run, same data: one training step from stored activations, and one image's
prediction (CoTexNet without text, CLIPSeg with a text).

Run: ``.venv/bin/python benchmarks/bench_cotexnet.py [--batch 8] [--size 224] [--repeats 3] [--device cpu]``.
The models are the released CLIPSeg architecture (``CIDAS/clipseg-rd64-refined``'s config) with untrained weights
(timing does not depend on weight values).  The training step of both is decoder forward + backward on stored
activations with the optimiser step; plain CLIPSeg's text condition comes from the frozen text tower once per
text (as the loop caches it), CoTexNet's runs the frozen text tower forward and backward every step (the
pseudo-token is trained through it) plus its two heads.  Prints median seconds and the ratios.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="input size (CoTexNet's released size is 224)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.models.vlsm.cotexnet import CotexnetMethod
    from napari_vip.models.vlsm.finetune import Recipe, make_loss

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.batch)]
    sentence = "1 oval large pink polyp area, located in the center of the image."
    mask = torch.zeros((args.batch, 1, args.size, args.size), device=args.device)
    mask[:, :, args.size // 4: args.size // 2, args.size // 3: 2 * args.size // 3] = 1

    plain = load_vlsm(VlsmSpec("clipseg", untrained=True), args.device)
    plain.input_size = args.size
    px = plain.preprocess(images)
    tok = plain.tokenize([sentence] * args.batch)
    with torch.no_grad():
        acts = plain.encode_image(px)
        cond = plain.text_conditional(tok["input_ids"], tok["attention_mask"])
    loss_fn = make_loss(Recipe())
    dec = list(plain.module.clipseg.decoder.parameters())
    opt = torch.optim.AdamW(dec, lr=1e-4)

    def plain_step():
        logits = plain.module.decode(acts.hidden, cond)
        loss = loss_fn(logits, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_plain = median_seconds(plain_step, args.repeats, warmup=True)

    ctx = load_vlsm(VlsmSpec("clipseg", untrained=True), args.device)
    ctx.input_size = args.size
    method = CotexnetMethod()
    params = method.trainable(ctx)
    opt2 = torch.optim.AdamW(params, lr=1e-4)
    with torch.no_grad():
        feats = ctx.module.features(px)
        roi = ctx.module.roi_cls(px, mask)
    batch = {"activations": feats.activations, "cls": feats.cls, "roi_cls": roi, "mask": mask, **tok}
    ctx.module.train()

    def ctx_step():
        loss, _ = method.loss(ctx, batch)
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    t_ctx = median_seconds(ctx_step, args.repeats, warmup=True)

    ctx.module.eval()
    plain.module.eval()
    image = images[0]
    t_free = median_seconds(lambda: ctx.predict(image), args.repeats, warmup=True)
    t_text = median_seconds(lambda: plain.predict(image, sentence), args.repeats, warmup=True)

    print(f"device {args.device}, input {args.size}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'measure':<48}{'seconds':>10}")
    print(f"{'training step, plain CLIPSeg (stored activations)':<48}{t_plain:>10.3f}")
    print(f"{'training step, CoTexNet (stored activations)':<48}{t_ctx:>10.3f}")
    print(f"{'  ratio CoTexNet / CLIPSeg':<48}{t_ctx / t_plain:>10.2f}")
    print(f"{'predict one image, CLIPSeg with text':<48}{t_text:>10.3f}")
    print(f"{'predict one image, CoTexNet without text':<48}{t_free:>10.3f}")
    print(f"{'  ratio CLIPSeg / CoTexNet':<48}{t_text / t_free:>10.2f}")


if __name__ == "__main__":
    main()
