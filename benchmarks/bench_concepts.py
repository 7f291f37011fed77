"""Region concepts: time to describe a mask and a box on images of growing size (no model).

Run: ``.venv/bin/python benchmarks/bench_concepts.py``.  Prints a table; the first row of each kind includes
no import time (a warm-up call runs first).  The dock computes region concepts on the GUI thread, so they
must stay well under a frame budget of ~100 ms.
"""

from __future__ import annotations

import time

import numpy as np
from skimage.draw import disk

from napari_vip.core.region_concepts import describe_box, describe_mask


def best_of(fn, repeats=5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    warm = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    describe_mask(warm, warm > 128, "x")
    describe_mask(np.stack([warm, warm // 2, warm // 3], -1), warm > 128, "x")
    print(f"{'side':>6} {'image':>5} {'region':>7} {'ms':>8}")
    for n in (256, 512, 1024, 2048):
        gray = rng.integers(0, 255, (n, n)).astype(np.uint8)
        rgb = np.stack([gray, gray // 2, gray // 3], -1)
        m = np.zeros((n, n), bool)
        rr, cc = disk((n // 4, n // 4), n // 10)
        m[rr, cc] = True
        box = (n * 0.1, n * 0.1, n * 0.4, n * 0.3)
        for name, im in (("gray", gray), ("rgb", rgb)):
            mask_s = best_of(lambda im=im, m=m: describe_mask(im, m, "x"))
            box_s = best_of(lambda im=im, box=box: describe_box(im, box, "x"))
            print(f"{n:>6} {name:>5} {'mask':>7} {mask_s * 1e3:8.1f}")
            print(f"{n:>6} {name:>5} {'box':>7} {box_s * 1e3:8.1f}")


if __name__ == "__main__":
    main()
