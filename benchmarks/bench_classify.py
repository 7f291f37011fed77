"""Classify benchmark: full-size untrained ViT-B/16 (weights do not change timing).

Prints a table of: model load time; classify latency for 5 classes x {none, bbox, circle, arrow}
(cold: new image and new prompts; warm text: new image, cached prompts; cached: same request again);
and the largest GUI event-loop gap while a classify job runs in the worker from the dock.

Run (Linux without a screen, under a virtual display):
    xvfb-run -a .venv/bin/python benchmarks/bench_classify.py [--arch ViT-B-16] [--device cpu] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

CLASSES = ["pneumonia", "normal", "effusion", "cardiomegaly", "nodule"]
STYLES = ["bbox", "circle", "arrow"]


def image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((512, 512, 3)) * 255).astype(np.uint8)


def engine_rows(arch: str, device: str, repeats: int) -> list[tuple[str, float]]:
    from napari_vip.core.markers import Marker
    from napari_vip.models.spec import ModelSpec
    from napari_vip.worker.classify import ClassifyRequest
    from napari_vip.worker.engine import Engine

    spec = ModelSpec(arch, untrained=True)
    engine = Engine()
    t0 = time.perf_counter()
    engine.clip(spec, device)
    rows = [("model load (build + move to device)", time.perf_counter() - t0)]
    markers = [Marker((200, 180, 300, 260), s) for s in STYLES]

    def run(seed, classes):
        req = ClassifyRequest(image(seed), markers, classes, spec, device=device)
        t = time.perf_counter()
        engine.run(req)
        return time.perf_counter() - t

    cold = [run(100 + r, [f"{c} {r}" for c in CLASSES]) for r in range(repeats)]
    warm = [run(200 + r, CLASSES) for r in range(repeats + 1)][1:]
    cached = [run(200, CLASSES) for _ in range(repeats)]

    def one_more_marker(seed):  # the interactive case: the user adds a marker to a classified image
        img = image(seed)
        engine.run(ClassifyRequest(img, markers[:2], CLASSES, spec, device=device))
        t = time.perf_counter()
        engine.run(ClassifyRequest(img, markers, CLASSES, spec, device=device))
        return time.perf_counter() - t

    added = [one_more_marker(300 + r) for r in range(repeats)]
    rows += [("classify, cold (4 images + 20 new prompts)", statistics.median(cold)),
             ("classify, prompts cached (4 new images)", statistics.median(warm)),
             ("classify, one marker added (1 new image)", statistics.median(added)),
             ("classify, same image again (all cached)", statistics.median(cached))]
    return rows


def gui_gap_rows(arch: str, device: str) -> list[tuple[str, float]]:
    import napari
    from gui_probe import EventLoopProbe, run_until
    from qtpy.QtWidgets import QApplication

    from napari_vip.widgets.classify import ClassifyWidget

    viewer = napari.Viewer(show=False)
    viewer.add_image(image(1), name="img", rgb=True)
    widget = ClassifyWidget(viewer)
    widget.model.set_untrained(arch)
    widget.model.device.setCurrentText(device)
    widget.classes.setPlainText("\n".join(CLASSES))
    viewer.layers["VIP markers"].add_rectangles(np.array([[180, 200], [260, 300]]))
    app = QApplication.instance()
    rows = []
    for label in ("first job (worker loads the model)", "next job (model loaded)"):
        widget.last_result = None
        probe = EventLoopProbe()
        probe.start()
        widget.classify()
        took = run_until(app, lambda: widget.last_result is not None)
        probe.stop()
        rows.append((f"GUI: {label}, end to end", took))
        rows.append((f"GUI: {label}, largest event-loop gap [ms]", probe.max_gap_ms / 1000))
    widget.bridge.shutdown()
    viewer.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="ViT-B-16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-gui", action="store_true")
    args = ap.parse_args()
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, arch {args.arch}")
    rows = engine_rows(args.arch, args.device, args.repeats)
    if not args.no_gui:
        rows += gui_gap_rows(args.arch, args.device)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}")
    for name, val in rows:
        unit = "ms" if "[ms]" in name else "s"
        shown = val * 1000 if unit == "ms" else val
        print(f"{name.replace(' [ms]', ''):<{width}}  {shown:>8.3f} {unit}")


if __name__ == "__main__":
    main()
