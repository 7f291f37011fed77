"""Segmentation timings beside segment-anything's own ``SamPredictor``, in the same run (prints a table).

    .venv/bin/python benchmarks/bench_segment.py [--arch vit_b] [--device cpu] [--repeats 10] [--no-gui]

Rows:
1. embedding of a 1024x1024 image: :meth:`SamModel.embed` vs ``SamPredictor.set_image``;
2. box -> mask decode with the embedding cached: :meth:`SamModel.decode` (three candidates, masks at image
   size) vs ``SamPredictor.predict`` (same box, same outputs); the masks are compared (IoU);
3. end to end in a viewer: rectangle added on "VIP markers" -> candidate shown in "VIP current mask"
   (worker process, embedding already cached), beside ``SamPredictor.predict`` alone;
4. GUI event-loop gap: longest interval between ticks of a 5 ms QTimer while the worker computes an
   embedding (what a user feels as stutter).

Full-size untrained weights: timing does not depend on weight values.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))  # gui_probe beside this script


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def image_1024() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = (rng.random((1024, 1024, 3)) * 80).astype(np.uint8)
    img[300:700, 350:650] += 150
    return img


def model_rows(arch: str, device: str, repeats: int) -> tuple[list, float]:
    import torch
    from segment_anything import SamPredictor

    from napari_vip.models.sam import SamSpec, load_sam

    model = load_sam(SamSpec(arch, untrained=True), device)
    predictor = SamPredictor(model.sam)
    img = image_1024()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def ours_embed():
        e = model.embed(img)
        sync()
        return e

    def ref_embed():
        predictor.set_image(img)
        sync()

    emb_repeats = 3 if device.startswith("cuda") else 1
    t_ours = median_ms(ours_embed, emb_repeats)
    t_ref = median_ms(ref_embed, emb_repeats)
    emb = model.embed(img)
    box = np.array([340.0, 290.0, 660.0, 710.0])
    ours = model.decode(emb, [box], multimask=True)
    ref, _, _ = predictor.predict(box=box, multimask_output=True)
    ious = [float((ours.masks[0, c] & ref[c]).sum() / max((ours.masks[0, c] | ref[c]).sum(), 1)) for c in range(3)]
    d_ours, d_ref = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        d_ours.append(median_ms(lambda: model.decode(emb, [box], multimask=True), 1))
        d_ref.append(median_ms(lambda: predictor.predict(box=box, multimask_output=True), 1))
    d_o, d_r = statistics.median(d_ours), statistics.median(d_ref)
    rows = [
        (f"embedding 1024x1024 ({arch}, {device})", t_ours, t_ref, t_ref / t_ours, ""),
        ("box -> 3 masks, cached embedding", d_o, d_r, d_r / d_o, f"min IoU {min(ious):.4f}"),
    ]
    return rows, d_r


def gui_rows(arch: str, device: str, predict_ms: float, repeats: int) -> list:
    import napari
    from gui_probe import EventLoopProbe, run_until
    from qtpy.QtWidgets import QApplication

    from napari_vip.layers import MARKERS_LAYER
    from napari_vip.widgets.segment import SegmentWidget

    viewer = napari.Viewer(show=False)
    viewer.add_image(image_1024()[..., 0].astype(np.uint16), name="bench")
    widget = SegmentWidget(viewer)
    widget.model.set_untrained(arch)
    widget.model.device.setCurrentText(device)

    app = QApplication.instance()

    def wait(cond, timeout=900.0):
        run_until(app, cond, timeout)

    # event-loop gap while the worker embeds (model build happens first; measure during the embedding only)
    widget.precompute()
    wait(lambda: widget.last_embed is not None)  # warm: worker up, model built, first embedding done
    widget.last_embed = None
    layer = viewer.layers["bench"]
    layer.data = layer.data[::-1].copy()  # a new image: a new embedding
    widget._input_cache = None
    probe = EventLoopProbe()
    probe.start()
    t0 = time.perf_counter()
    widget.precompute()
    wait(lambda: widget.last_embed is not None)
    probe.stop()
    embed_s = time.perf_counter() - t0
    gaps = np.array(probe.gaps) if probe.gaps else np.array([embed_s * 1000])
    gap_max, gap_p99 = float(gaps.max()), float(np.percentile(gaps, 99))

    # end to end: rectangle added -> candidate shown (embedding cached in the worker)
    markers = viewer.layers[MARKERS_LAYER]
    lat = []
    for k in range(repeats):
        widget.last_result = None
        off = 10 * k
        markers.add_rectangles(np.array([[290 + off, 340], [710, 660 - off]]))
        wait(lambda: widget.last_result is not None)
        QApplication.processEvents()
        lat.append(widget.last_latency_ms)
    e2e = statistics.median(lat[1:] if len(lat) > 2 else lat)
    source = widget.last_result.embedding_source
    widget.bridge.shutdown()
    viewer.close()
    return [
        ("box added -> mask shown (viewer, worker)", e2e, predict_ms, predict_ms / e2e,
         f"median of {len(lat)}; embedding source {source}"),
        ("GUI event-loop gap during embedding", gap_max, None, None,
         f"max; p99 {gap_p99:.1f} ms; embedding took {embed_s:.1f} s, {len(probe.gaps)} ticks"),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="vit_b")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-gui", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("NAPARI_VIP_CACHE", tempfile.mkdtemp(prefix="vip-bench-"))
    import torch

    rows, predict_ms = model_rows(args.arch, args.device, args.repeats)
    if not args.no_gui:
        rows += gui_rows(args.arch, args.device, predict_ms, max(3, args.repeats // 2))
    print(f"# napari-vip segmentation benchmark: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPU(s), torch {torch.__version__} ({torch.get_num_threads()} threads), device "
          f"{args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"| {'step':<44} | {'napari-vip ms':>13} | {'SamPredictor ms':>15} | {'speed-up':>8} | notes")
    print(f"|{'-' * 46}|{'-' * 15}|{'-' * 17}|{'-' * 10}|------")
    for name, ours, ref, ratio, note in rows:
        ref_s = f"{ref:15.1f}" if ref is not None else f"{'':>15}"
        ratio_s = f"{ratio:7.2f}x" if ratio is not None else f"{'':>8}"
        print(f"| {name:<44} | {ours:13.1f} | {ref_s} | {ratio_s} | {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
