"""Volume timings in one run (prints tables): image encoders, propagation per slice, the viewer's event-loop gap.

    .venv/bin/python benchmarks/bench_volume.py [--device cpu] [--slices 64] [--size 1024] [--archs ...]
        [--only encoders propagation gap]

Sections:
1. ``encoders``: image-encoder time of one 1024x1024 plane: SAM vit_b (``SamModel.embed``) and SAM 2.1
   hiera-t/s/b+ (``Sam2Model.embed``), same input, median of ``--repeats``; ratio to vit_b;
2. ``propagation``: one object through a ``--slices`` phantom volume: SAM 2.1 hiera-t video tracking
   (``propagate_sam2``) vs SAM vit_b slice by slice (``propagate_sam1``, embeddings computed as it goes);
   seconds per slice (``--prop-slices`` to run fewer slices than the encoder section's volume);
3. ``gap``: the viewer's largest event-loop gap while the segment dock propagates through ``--gap-slices``
   slices of ``--gap-size``² in the real worker process: a 1 ms Qt timer records the time between its ticks
   from the click to the committed 3D object (progress messages, the result's commit into "VIP annotations",
   autosave).  The model is a small SAM 2 (hiera modules, 16 wide, 128² input) so the worker sends its
   progress as fast as the GUI can take it: the gap is the GUI's, not the model's.  Under a display
   (``xvfb-run``) the viewer window is shown and its canvas redraws are in the gap.

Full-size untrained weights: timing does not depend on weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
from timing import median_seconds

#: The small SAM 2 of the gap section (hiera-t's modules, narrower and fewer blocks, 128² input).
SMALL_SAM2 = {"sam2_base": "sam2.1_hiera_t", "image_size": 128, "overrides": [
    "++model.image_encoder.trunk.embed_dim=16", "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]", "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.dim_feedforward=64"]}


def phantom(z: int, size: int) -> np.ndarray:
    """``(z, size, size)`` CT-like volume: a body disc and a ball whose cross-section changes along z."""
    yy, xx = np.mgrid[:size, :size]
    vol = np.full((z, size, size), -1000.0, np.float32)
    vol[:, (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2] = 40.0
    for k in range(z):
        r = 0.2 * size * np.sqrt(max(0.0, 1 - ((k - z / 2) / (z / 2 + 1)) ** 2))
        vol[k][(yy - 0.45 * size) ** 2 + (xx - 0.55 * size) ** 2 < r ** 2] = 300.0
    return vol


def load(arch: str, device: str):
    from napari_vip.models.sam import SamSpec, load_sam
    from napari_vip.models.sam2_family import Sam2Spec, load_sam2

    if arch.startswith("vit"):
        return load_sam(SamSpec(arch, untrained=True), device)
    return load_sam2(Sam2Spec(arch, untrained=True), device)


def encoders(args) -> None:
    rng = np.random.default_rng(0)
    plane = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    print(f"| image encoder | seconds per {args.size}² plane | vs SAM vit_b |\n|---|---:|---:|")
    ref = None
    for arch in args.archs:
        m = load(arch, args.device)
        m.embed(plane)  # warm-up
        t = median_seconds(lambda m=m: m.embed(plane), args.repeats)
        ref = t if arch == "vit_b" else ref
        ratio = f"{ref / t:.1f}x faster" if ref and arch != "vit_b" else ("1x" if arch == "vit_b" else "")
        print(f"| {arch} | {t:.2f} | {ratio} |", flush=True)
        del m


def propagation(args) -> None:
    from napari_vip.models.propagation import (
        SlicePrompt,
        displayed_slices,
        propagate_sam1,
        propagate_sam2,
        volume_to_rgb,
    )

    z = args.prop_slices or args.slices
    vol = phantom(z, args.size)
    key = z // 2
    box = (0.3 * args.size, 0.2 * args.size, 0.75 * args.size, 0.7 * args.size)
    print(f"\n| propagation ({z} slices of {args.size}²) | slices | seconds per slice |\n|---|---:|---:|")
    if "sam2.1_hiera_t" in args.archs:
        model = load("sam2.1_hiera_t", args.device)
        rgb = volume_to_rgb(vol, (-200.0, 400.0))
        t0 = time.perf_counter()
        n = sum(1 for _ in propagate_sam2(model, rgb, [SlicePrompt(key, box_xyxy=box)], stop_when_empty=False))
        print(f"| SAM 2.1 hiera-t video predictor | {n} | {(time.perf_counter() - t0) / n:.2f} |", flush=True)
        del model
    if "vit_b" in args.archs:
        sam = load("vit_b", args.device)
        rgb = displayed_slices(vol, (-200.0, 400.0))
        t0 = time.perf_counter()
        n = sum(1 for _ in propagate_sam1(sam, lambda j: sam.embed(rgb[j]), rgb, SlicePrompt(key, box_xyxy=box),
                                          iou_threshold=-1e9, stop_when_empty=False))
        print(f"| SAM vit_b slice by slice | {n} | {(time.perf_counter() - t0) / n:.2f} |", flush=True)


def event_loop_gap(args) -> None:
    """Largest time between 1 ms timer ticks on the GUI thread while the dock propagates (see the docstring)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    os.environ.setdefault("NAPARI_VIP_AUTOSAVE", tempfile.mkdtemp(prefix="vip-bench-autosave-"))
    shown = bool(os.environ.get("DISPLAY"))
    if shown:
        import napari

        viewer = napari.Viewer(show=True)
    else:
        from napari.components import ViewerModel

        app = QApplication.instance() or QApplication([])  # noqa: F841 - the dock needs the application
        viewer = ViewerModel()
    from napari_vip.layers import MARKERS_LAYER
    from napari_vip.widgets.segment import SegmentWidget

    cfg = os.path.join(tempfile.mkdtemp(prefix="vip-bench-"), "small-sam2.json")
    with open(cfg, "w") as f:
        json.dump(SMALL_SAM2, f)
    widget = SegmentWidget(viewer)
    if shown:
        viewer.window.add_dock_widget(widget, name="VIP segment")
    widget.auto.setChecked(False)
    widget.volume.stop_empty.setChecked(False)
    widget.model.set_untrained(cfg)
    widget.model.device.setCurrentText("cpu")
    z, s = args.gap_slices, args.gap_size
    viewer.add_image(phantom(z, s), name="ct", contrast_limits=(-200, 400))
    viewer.dims.set_current_step(0, z // 2)
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[0.2 * s, 0.3 * s], [0.7 * s, 0.75 * s]]))
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(1)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def run_once() -> tuple[float, list[float], float]:
        widget.volume.committed = None
        ticks.clear()
        timer.start()
        t0 = time.perf_counter()
        widget.volume.propagate()
        while widget.volume.committed is None:
            app.processEvents()
            time.sleep(0.0005)
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("propagation did not finish in 10 minutes")
        end = time.perf_counter()
        for _ in range(50):  # what follows the result on the GUI thread (layer refresh, redraw)
            app.processEvents()
            time.sleep(0.002)
        timer.stop()
        gaps = np.diff(ticks) * 1000.0
        return end - t0, list(gaps), [ticks[i] - t0 for i in range(len(gaps))]

    run_once()  # warm-up: the worker loads the model
    widget.session.undo()
    seconds, gaps, starts = run_once()
    top = np.argsort(gaps)[::-1][:args.top_gaps]
    when = starts[int(top[0])]
    voxels = int(widget.volume.committed[1].mask.sum())
    widget.bridge.shutdown()
    print(f"\n| viewer event loop during propagation ({z} slices of {s}², "
          f"{'window shown' if shown else 'no window'}) | value |\n|---|---:|")
    print(f"| object committed | {voxels:,} voxels |")
    print(f"| click to committed object | {seconds:.2f} s |")
    print(f"| largest gap between 1 ms ticks | {max(gaps):.1f} ms (from {when:.2f} s after the click) |")
    print(f"| 99th percentile gap | {np.percentile(gaps, 99):.1f} ms |")
    print(f"| ticks | {len(gaps) + 1} |", flush=True)
    for i in top[1:]:
        print(f"| next largest gap | {gaps[i]:.1f} ms (from {starts[i]:.2f} s) |")
    if shown:
        viewer.close()


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--prop-slices", type=int, default=None, help="slices of the propagation section")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--archs", nargs="+", default=["vit_b", "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+"])
    ap.add_argument("--gap-slices", type=int, default=64)
    ap.add_argument("--gap-size", type=int, default=512)
    ap.add_argument("--top-gaps", type=int, default=3, help="how many of the largest gaps to list")
    ap.add_argument("--only", nargs="+", choices=("encoders", "propagation", "gap"),
                    default=["encoders", "propagation", "gap"])
    args = ap.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    for name, section in (("encoders", encoders), ("propagation", propagation), ("gap", event_loop_gap)):
        if name in args.only:
            section(args)


if __name__ == "__main__":
    main()
