"""Precision benchmark: the interactive steps in float32 against ``auto`` (and any precision named), same run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_precision.py [--device cpu] [--precisions fp32 auto bf16]
        [--only matmul classify box embed propagate attention autocast] [--repeats 3] [--slices 4]

Rows (full-size untrained networks: timing does not depend on weight values):

- ``matmul``: GFLOP/s of a square matrix product per precision (the machine's ceiling);
- ``classify``: ViT-B-16, 4 conditions (none, bbox, circle, arrow) x 5 classes, 512x512 input, prompts cached:
  the four renders through the image tower (what a new marker costs);
- ``box``: SAM vit_b box -> 3 masks on a cached embedding (the decoder; float32 in every precision);
- ``embed``: SAM 2.1 hiera-t image embedding of one 1024x1024 plane;
- ``propagate``: SAM 2.1 hiera-t tracking one object through ``--slices`` slices of 1024x1024, per slice;
- ``attention``: one ViT-B-16 attention-rollout map of a 256x256 render;
- ``autocast``: the ViT-B-16 image tower on 4 renders under ``torch.autocast`` in bfloat16 instead of casting;
- ``parity`` (not in the default run): the full-size ViT-B-16 image tower on one render in bf16 (or the low
  precisions named in ``--precisions``) against float32: embedding cosine and class-probability change.

Each row also gives the step's floating-point operations (counted with ``torch.utils.flop_counter``) and the time
they would take at the matrix-product rate of the precision: the ceiling the step is measured against.  A
precision that ``auto`` resolves to on this machine is measured once and printed under both names.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time

import numpy as np
from timing import median_seconds

CLASSES = ["pneumonia", "nodule", "effusion", "cardiomegaly", "normal"]


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        name = ""
    return name or platform.processor() or platform.machine()


def flops_of(fn) -> float:
    """Floating-point operations of one call of ``fn`` (matrix products and convolutions), in GFLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def matmul_rate(precision: str, device: str, n: int = 1024) -> float:
    """GFLOP/s of an ``n x n`` matrix product in ``precision``."""
    import torch

    from napari_vip.models.precision import torch_dtype

    a = torch.randn(n, n, device=device).to(torch_dtype(precision))
    b = torch.randn(n, n, device=device).to(torch_dtype(precision))

    def run():
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    run()
    t = median_seconds(run, 3)
    return 2 * n ** 3 / t / 1e9


def xray(size: int = 512) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    img = 60 + 0.2 * xx + rng.normal(0, 8, (size, size))
    img[((yy - size * 0.4) / (size * 0.15)) ** 2 + ((xx - size * 0.45) / (size * 0.2)) ** 2 < 1] = 220
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, -1)


# -- steps: each returns (seconds, GFLOPs of the timed call) ------------------------------------------------------
def step_classify(precision, device, repeats):
    from napari_vip.core.markers import Marker
    from napari_vip.core.recipes import render
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    clip = load_clip(ModelSpec("ViT-B-16", untrained=True, precision=precision), device)
    img = xray()
    renders = [render(img, None if s == "none" else Marker((150, 120, 330, 300), s), "displayed")
               for s in ("none", "bbox", "circle", "arrow")]
    prompts = [f"A chest x-ray with signs of {c}." for c in CLASSES]
    clip.encode_texts(prompts)

    def run():
        clip._image_cache.clear()
        clip.probabilities(clip.encode_images(renders), clip.encode_texts(prompts))
    return median_seconds(run, repeats, warmup=True), flops_of(run)


def step_box(precision, device, repeats):
    from napari_vip.models.sam import SamSpec, load_sam

    model = load_sam(SamSpec("vit_b", untrained=True, precision=precision), device)
    emb = model.embed(xray(1024))

    def run():
        model.decode(emb, boxes_xyxy=[(300, 250, 650, 600)], multimask=True)
    return median_seconds(run, repeats, warmup=True), flops_of(run)


def step_embed(precision, device, repeats):
    from napari_vip.models.sam2_family import Sam2Spec, load_sam2

    model = load_sam2(Sam2Spec("sam2.1_hiera_t", untrained=True, precision=precision), device)
    img = xray(1024)
    return median_seconds(lambda: model.embed(img), repeats, warmup=True), flops_of(lambda: model.embed(img))


def step_propagate(precision, device, slices):
    from napari_vip.models.propagation import SlicePrompt, propagate_sam2
    from napari_vip.models.sam2_family import Sam2Spec, load_sam2

    model = load_sam2(Sam2Spec("sam2.1_hiera_t", untrained=True, precision=precision), device)
    one = xray(1024)
    vol = np.stack([np.roll(one, 8 * k, axis=0) for k in range(slices)])

    def run():
        for _ in propagate_sam2(model, vol, [SlicePrompt(0, box_xyxy=(300, 250, 650, 600))],
                                stop_when_empty=False):
            pass
    t0 = time.perf_counter()
    run()
    seconds = (time.perf_counter() - t0) / slices
    return seconds, None


def step_attention(precision, device, repeats):
    from napari_vip.core.markers import Marker
    from napari_vip.core.recipes import render
    from napari_vip.models.attention import compute_map
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    clip = load_clip(ModelSpec("ViT-B-16", untrained=True, precision=precision), device)
    r = render(xray(), Marker((150, 120, 330, 300), "circle"), "paper")

    def run():
        compute_map(clip, r, "rollout", "A chest x-ray with signs of pneumonia.")
    return median_seconds(run, repeats, warmup=True), flops_of(run)


def step_autocast(device, repeats, cast: bool):
    """ViT-B-16's image tower on 4 renders: float32; under ``torch.autocast`` (bfloat16 on CPUs, float16 on GPUs,
    weights float32); and with ``cast`` the tower cast to that dtype (what ``--precision`` does).  Seconds each."""
    import torch

    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    kind = device.split(":")[0]
    low = "bf16" if kind == "cpu" else "fp16"
    out = {}
    for mode in ("fp32", "autocast", low) if cast else ("fp32", "autocast"):
        clip = load_clip(ModelSpec("ViT-B-16", untrained=True, precision=low if mode == low else "fp32"), device)
        x = clip.image_batch([xray(256)] * 4)

        def run(model=clip.model, x=x, autocast=mode == "autocast"):
            with torch.inference_mode(), torch.autocast(kind, dtype=torch.bfloat16 if kind == "cpu" else torch.float16,
                                                        enabled=autocast):
                model.encode_image(x)
        out[mode if mode != low else f"{low} (cast)"] = median_seconds(run, repeats, warmup=True)
    return out


def parity_clip(device, precisions):
    """Full-size ViT-B-16 (untrained, a trained CLIP's logit scale 100): one 256² render through the image tower in
    each precision against float32: cosine of the embeddings, largest change of 5 class probabilities, seconds."""
    import tempfile
    from pathlib import Path

    import torch

    from napari_vip.core.markers import Marker
    from napari_vip.core.recipes import render
    from napari_vip.models.clip import _create, load_clip
    from napari_vip.models.spec import ModelSpec

    r = [render(xray(), Marker((150, 120, 330, 300), "circle"), "paper")]
    torch.manual_seed(0)
    net, _, _ = _create("ViT-B-16", "cpu")
    net.logit_scale.data.fill_(float(np.log(100.0)))
    path = Path(tempfile.mkdtemp(prefix="bench_precision_")) / "vitb16.pt"
    torch.save(net.state_dict(), path)  # one set of weights for every precision
    del net
    ref = load_clip(ModelSpec("ViT-B-16", checkpoint=str(path), precision="fp32"), device)
    text = ref.encode_texts([f"A chest x-ray with signs of {c}." for c in CLASSES])
    base = ref.encode_images(r)
    rows = []
    for p in precisions:
        clip = load_clip(ModelSpec("ViT-B-16", checkpoint=str(path), precision=p), device)
        t0 = time.perf_counter()
        emb = clip.encode_images(r)
        seconds = time.perf_counter() - t0
        cos = float(torch.nn.functional.cosine_similarity(emb, base).min())
        dp = float(np.abs(ref.probabilities(emb, text) - ref.probabilities(base, text)).max())
        rows.append((p, cos, dp, seconds))
    path.unlink()
    path.parent.rmdir()
    return rows


STEPS = {
    "classify": ("classify: 4 renders through ViT-B-16, 5 classes (prompts cached)", step_classify, "clip"),
    "box": ("box -> 3 masks, SAM vit_b, cached embedding", step_box, "sam"),
    "embed": ("SAM 2.1 hiera-t embedding, 1024x1024", step_embed, "sam2"),
    "propagate": ("SAM 2.1 hiera-t propagation, per 1024x1024 slice", step_propagate, "sam2"),
    "attention": ("one attention map (rollout), ViT-B-16", step_attention, "clip"),
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    ap.add_argument("--only", nargs="+", default=["matmul", *STEPS, "autocast"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--slices", type=int, default=4)
    args = ap.parse_args(argv)

    import torch

    from napari_vip.models.precision import CONCRETE, cpu_flags, cpu_runs_bf16, resolve_precision

    flags = cpu_flags() or set()
    print(f"machine: {machine()}; device {args.device}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; CPU bf16 instructions: {', '.join(sorted(f for f in flags if 'bf16' in f)) or 'none'} "
          f"(native: {cpu_runs_bf16()})")
    auto = {fam: resolve_precision("auto", args.device, fam) for fam in ("clip", "sam", "sam2")}
    print("auto resolves to: " + ", ".join(f"{k} {v}" for k, v in auto.items()))

    rates = {}
    for p in CONCRETE:
        if "matmul" in args.only or any(q in (p, "auto") for q in args.precisions):
            rates[p] = matmul_rate(p, args.device)
    if "matmul" in args.only:
        print("\n| precision | 1024² matrix product GFLOP/s |\n|---|---:|")
        for p, r in rates.items():
            print(f"| {p} | {r:.1f} |")

    print("\n| step | precision | seconds | GFLOPs | at matmul rate | vs fp32 |\n|---|---|---:|---:|---:|---:|")
    for name, (label, fn, fam) in STEPS.items():
        if name not in args.only:
            continue
        done: dict[str, tuple] = {}
        for choice in args.precisions:
            concrete = resolve_precision(choice, args.device, fam)
            if concrete not in done:
                arg = args.slices if name == "propagate" else args.repeats
                done[concrete] = fn(concrete, args.device, arg)
            seconds, gflops = done[concrete]
            ref = done.get("fp32", (None,))[0]
            floor = f"{gflops / rates[concrete]:.3f} s" if gflops else "—"
            ratio = f"{ref / seconds:.2f}x" if ref else "—"
            shown = f"{choice} ({concrete})" if choice == "auto" else choice
            print(f"| {label} | {shown} | {seconds:.3f} | {gflops:.1f} | {floor} | {ratio} |" if gflops else
                  f"| {label} | {shown} | {seconds:.3f} | — | — | {ratio} |", flush=True)
    if "parity" in args.only:
        low = [p for p in ("bf16", "fp16") if p in args.precisions] or ["bf16"]
        print("\n| ViT-B-16 image tower, full size, one render | cosine to float32 | max Δ probability (5 classes, "
              "logit scale 100) | seconds |\n|---|---:|---:|---:|")
        for p, cos, dp, seconds in parity_clip(args.device, low):
            print(f"| {p} | {cos:.6f} | {dp:.4f} | {seconds:.1f} |", flush=True)
    if "autocast" in args.only:
        times = step_autocast(args.device, args.repeats, cast="bf16" in args.precisions or args.device != "cpu")
        print("\n| ViT-B-16 image tower, 4 renders of 256² | seconds | vs float32 |\n|---|---:|---:|")
        for mode, seconds in times.items():
            print(f"| {mode} | {seconds:.3f} | {times['fp32'] / seconds:.2f}x |", flush=True)

if __name__ == "__main__":
    main()
