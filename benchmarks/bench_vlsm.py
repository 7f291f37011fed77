"""VLSMs, same run: CLIPSeg inference against transformers' pipeline; a fine-tuning epoch with the frozen encoder's
activations stored against recomputed; DDP with 2 processes against 1.

    .venv/bin/python benchmarks/bench_vlsm.py [--repeats 3] [--images 200] [--batch-size 16] [--threads N]
                                              [--device cpu|cuda] [--skip-ddp]

Rows:
- inference per image (a 480x640 RGB image, one prompt) with the released CLIPSeg architecture
  (``CIDAS/clipseg-rd64-refined``'s, untrained: timing does not depend on weight values): ``VlsmModel.predict``
  (preprocess, tokenize, encode, decode, sigmoid, nearest-exact resize back) against ``CLIPSegProcessor``
  (PIL backend) + ``CLIPSegForImageSegmentation`` + the same sigmoid and resize;
- one epoch of decoder fine-tuning over ``--images`` 352x352 images with the released architecture: activations
  stored (the epoch reads them; encoding them once is reported on its own row) against recomputed at every step;
- one epoch over ``--images`` images of a small CLIPSeg (64 px) under ``torchrun --nproc_per_node 2`` against 1
  (gloo on the CPU; the epoch time is the slower rank's, from the run's history).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import median_seconds

ROOT = Path(__file__).resolve().parents[1]


def _items(n: int, size: int, rng):
    import numpy as np

    from napari_vip.models.vlsm.finetune import FinetuneItem

    items = []
    for k in range(n):
        rgb = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
        mask = np.zeros((size, size), bool)
        mask[size // 4: size // 2, size // 3: 2 * size // 3] = True
        items.append(FinetuneItem(f"s{k}", f"{k:064x}", {"p0": "", "p1": "polyp", "p2": "one small polyp"},
                                  lambda rgb=rgb, mask=mask: (rgb, mask)))
    return items


def bench_inference(model, repeats: int) -> tuple[float, float, float]:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPSegProcessor

    from napari_vip.models.vlsm.build import clip_tokenizer_dir
    from napari_vip.models.vlsm.model import resize_nearest_exact

    folder = Path(tempfile.mkdtemp(prefix="bench_vlsm_proc_"))
    for f in clip_tokenizer_dir().iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor",
        "size": {"height": 352, "width": 352}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_normalize": True, "image_mean": list(model.mean), "image_std": list(model.std)}))
    proc = CLIPSegProcessor.from_pretrained(str(folder), backend="pil")
    hf = model.module.clipseg
    img = np.random.default_rng(0).integers(0, 256, (480, 640, 3)).astype(np.uint8)
    text = "one small pink circle polyp, located in right of the image"

    def pipeline():
        inputs = proc(text=[text], images=[Image.fromarray(img)], padding="max_length", max_length=77,
                      truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits = hf(**{k: v.to(model.device) for k, v in inputs.items()}).logits
        prob = torch.sigmoid(logits[0]).cpu().numpy()
        return resize_nearest_exact(prob > 0.5, img.shape[:2]), resize_nearest_exact(prob, img.shape[:2])

    ours = median_seconds(lambda: model.predict(img, text), repeats, warmup=True)
    theirs = median_seconds(pipeline, repeats, warmup=True)
    diff = float(np.abs(model.predict(img, text).logits_model - hf(**proc(
        text=[text], images=[Image.fromarray(img)], padding="max_length", max_length=77, truncation=True,
        return_tensors="pt")).logits[0].detach().cpu().numpy()).max())
    return ours, theirs, diff


def bench_epoch(model, n: int, batch: int) -> dict:
    import numpy as np

    from napari_vip.models.vlsm.activation_store import ActivationStore
    from napari_vip.models.vlsm.finetune import Recipe, finetune

    rng = np.random.default_rng(0)
    items = _items(n, 352, rng)
    base = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    out = Path(tempfile.mkdtemp(prefix="bench_vlsm_ft_"))
    t0 = time.perf_counter()
    stored = finetune(model, items, [], Recipe(prompt="p2", epochs=1, batch_size=batch, min_epochs=1), out / "s",
                      store=ActivationStore(None), resume=False)
    stored_total = time.perf_counter() - t0
    model.module.load_state_dict(base)
    recomputed = finetune(model, items, [], Recipe(prompt="p2", epochs=1, batch_size=batch, min_epochs=1,
                                                   store_activations=False), out / "r", resume=False)
    return {"stored_epoch": stored.history[0]["seconds"], "encode_once": stored.activations["seconds"],
            "stored_total": stored_total, "recomputed_epoch": recomputed.history[0]["seconds"]}


def bench_ddp(n: int, epochs: int = 3) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.vlsm_fixtures import save_clipseg_folder, small_clipseg_arch, write_shapes_dataset

    tmp = Path(tempfile.mkdtemp(prefix="bench_vlsm_ddp_"))
    data = write_shapes_dataset(tmp / "data", {"train": n // 2, "val": 4})
    folder = save_clipseg_folder(tmp / "model", small_clipseg_arch(), input_size=64)
    out = {}
    for procs in (1, 2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--master_addr=127.0.0.1",
               f"--master_port={port}", "-m", "napari_vip.cli.main", "finetune", str(data), "--vlsm-checkpoint",
               str(folder), "--prompt", "p1", "--epochs", str(epochs), "--batch-size", "16", "--activations", "",
               "--out", str(tmp / f"out{procs}"), "--device", "cpu", "--json"]
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(ROOT))
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        hist = json.loads(done.stdout)["history"]
        out[procs] = min(h["seconds"] for h in hist[1:]) if len(hist) > 1 else hist[0]["seconds"]
    return out


def main() -> None:
    import torch

    from napari_vip.models.vlsm import VlsmSpec, load_vlsm

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-ddp", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_vlsm(VlsmSpec("clipseg", untrained=True), args.device)
    ours, theirs, diff = bench_inference(model, args.repeats)
    ep = bench_epoch(model, args.images, args.batch_size)
    ddp = None if args.skip_ddp or args.device != "cpu" else bench_ddp(args.images)
    print(f"# bench_vlsm on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    print("| measurement | ours | reference | ratio (reference / ours) |")
    print("|---|---|---|---|")
    print(f"| CLIPSeg inference per image (480x640, released architecture) | {ours * 1000:.0f} ms | "
          f"{theirs * 1000:.0f} ms (CLIPSegProcessor + model) | {theirs / ours:.2f} (max logit diff {diff:.1e}) |")
    print(f"| fine-tuning epoch, {args.images} images, batch {args.batch_size} (decoder) | "
          f"{ep['stored_epoch']:.1f} s stored activations | {ep['recomputed_epoch']:.1f} s recomputed | "
          f"{ep['recomputed_epoch'] / ep['stored_epoch']:.1f} |")
    print(f"| encoding the {args.images} images once (then stored) | {ep['encode_once']:.1f} s | | |")
    if ddp:
        print(f"| small CLIPSeg epoch, {args.images} samples, batch 16: torchrun 2 processes vs 1 | {ddp[2]:.2f} s | "
              f"{ddp[1]:.2f} s (1 process) | {ddp[1] / ddp[2]:.2f} |")


if __name__ == "__main__":
    main()
