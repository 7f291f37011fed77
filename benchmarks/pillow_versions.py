"""Which ``paper`` renders depend on the Pillow version: this environment's Pillow against another one.

The released code of Denner et al. pins Pillow 10.3.0.  This script renders the same synthetic images and
boxes (gray 8- and 16-bit planes of several shapes, square and not, every marker style, line widths 1 and 3,
plus JSRT-sized planes through the released JSRT loader) with napari-vip's ``paper`` recipe twice, once under
each Pillow (each in its own interpreter), and prints per style how many renders are identical and, for the
others, how many pixels differ and by how many grey levels at most.

Get another Pillow without touching the virtualenv, e.g. the released code's:

    .venv/bin/pip download pillow==10.3.0 --no-deps -d /tmp/pil
    mkdir /tmp/pil103 && cd /tmp/pil103 && python3 -m zipfile -e /tmp/pil/pillow-10.3.0-*.whl .

Run:
    .venv/bin/python benchmarks/pillow_versions.py --other /tmp/pil103 [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STYLES = ("none", "bbox", "circle", "arrow", "crop")
SHAPES = ((300, 400), (512, 512), (640, 480), (1024, 800), (2048, 2048), (64, 96), (180, 200), (1411, 1411), (2500, 3000))


def _cases(n: int, seed: int = 0):
    """``(plane, box, jsrt)`` cases: smooth random planes (uint8 or uint16) and boxes inside them."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = SHAPES[i % len(SHAPES)]
        jsrt = (h, w) == (2048, 2048) and i % 2 == 0
        dtype = np.int16 if jsrt else (np.uint16 if i % 3 else np.uint8)
        top = 4095 if jsrt else np.iinfo(dtype).max
        coarse = rng.random((h // 16 + 2, w // 16 + 2))
        plane = np.kron(coarse, np.ones((16, 16)))[:h, :w] * 0.8 + rng.random((h, w)) * 0.2
        plane = (plane * top).astype(dtype)
        bw, bh = rng.uniform(0.05, 0.4) * w, rng.uniform(0.05, 0.4) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        yield plane, (x0, y0, x0 + bw, y0 + bh), jsrt


def _render_all(n: int, out: str) -> None:
    import PIL

    from napari_vip.core.markers import Marker
    from napari_vip.core.paper_render import jsrt_rgb, paper_rgb, render_paper

    arrays = {}
    for i, (plane, box, jsrt) in enumerate(_cases(n)):
        rgb = jsrt_rgb(plane) if jsrt else paper_rgb(plane)
        for style in STYLES:
            for width in (1, 3):
                if style in ("none", "crop") and width == 3:
                    continue
                marker = None if style == "none" else Marker(box, style, "red", width)
                arrays[f"{i}|{style}|{width}"] = render_paper(rgb, marker)
    np.savez_compressed(out, version=np.array(PIL.__version__), **arrays)


def _run(pillow_dir: str | None, n: int, out: str) -> None:
    env = dict(os.environ)
    if pillow_dir:
        env["PYTHONPATH"] = os.pathsep.join([pillow_dir, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import pillow_versions as p; " \
           f"p._render_all({n}, {out!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--other", required=True, help="folder holding another Pillow's PIL package")
    ap.add_argument("--samples", type=int, default=40)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        mine, other = f"{tmp}/mine.npz", f"{tmp}/other.npz"
        _run(None, args.samples, mine)
        _run(args.other, args.samples, other)
        a, b = np.load(mine), np.load(other)
        print(f"Pillow {a['version']} (this environment) vs Pillow {b['version']} ({args.other}), "
              f"{args.samples} images")
        print(f"{'style':8s} {'width':>5s} {'renders':>8s} {'identical':>10s} {'max px differing':>17s} "
              f"{'max grey diff':>14s}")
        for style in STYLES:
            for width in (1, 3):
                keys = [k for k in a.files if k != "version" and k.split("|")[1:] == [style, str(width)]]
                if not keys:
                    continue
                same, px, grey = 0, 0, 0
                for k in keys:
                    d = np.abs(a[k].astype(int) - b[k].astype(int))
                    same += int(not d.any())
                    px = max(px, int(d.any(axis=-1).sum()))
                    grey = max(grey, int(d.max()))
                print(f"{style:8s} {width:5d} {len(keys):8d} {same:10d} {px:17d} {grey:14d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
