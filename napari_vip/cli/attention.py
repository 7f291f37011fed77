"""``napari-vip attention IMAGE --box X0 Y0 X1 Y1 --marker circle --class pneumonia --method rollout --out heat.npy``."""

from __future__ import annotations

from ..core.markers import COLORS, STYLES, Marker
from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES
from ..models.attention import METHODS
from .common import add_model_args, add_window_args, emit, model_image, model_spec_from_args, stderr_progress


def add_parser(sub) -> None:
    p = sub.add_parser("attention", help="where the CLIP image tower looks, without and with a visual marker",
                       description="Attention maps (rollout, Grad-CAM or patch-text similarity) for one class, for "
                       "the image without a marker and with each marker, and the share of each map's mass inside "
                       "the marker's box.")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)")
    p.add_argument("--class", dest="class_name", required=True, help="the finding to explain")
    p.add_argument("--classes", nargs="+", default=None,
                   help="candidate findings (default: just --class); --class must be one of them")
    p.add_argument("--method", default="rollout", choices=METHODS)
    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"), default=[],
                   help="marker box in (x, y) pixel coordinates; repeat for several markers")
    p.add_argument("--marker", default="circle", choices=STYLES, help="how to render each box")
    p.add_argument("--color", default="red", choices=list(COLORS))
    p.add_argument("--line-width", type=int, default=1, help="in pixels of the 256x256 render")
    p.add_argument("--template", default=DEFAULT_TEMPLATE)
    p.add_argument("--modality", default=DEFAULT_MODALITY)
    p.add_argument("--no-marker-text", action="store_true", help="leave the marker phrase out of the prompts")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-marker condition")
    p.add_argument("--out", metavar="NPY", default=None,
                   help="save the maps as a (K, H, W) float32 .npy stack in the image's frame, one per condition "
                   "in the JSON's order (crop maps placed at their origin, 0 outside)")
    add_window_args(p)
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON (focus numbers, patch grids)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..core.coords import clip_box_xyxy
    from ..core.errors import VipInputError
    from ..worker.attention import AttentionRequest, check_class
    from ..worker.engine import Engine, ProgressReporter

    if args.out and not args.out.lower().endswith(".npy"):
        raise VipInputError(f"--out {args.out!r}: give a .npy file name.")
    classes = args.classes or [args.class_name]
    check_class(args.class_name, classes)
    image = model_image(args)
    notes = list(image.notes)
    markers = []
    for box in args.box:
        clipped, was_clipped = clip_box_xyxy(box, image.rgb.shape[:2])
        if was_clipped:
            notes.append(f"box {tuple(box)} reaches outside the image; clipped to {tuple(round(v, 2) for v in clipped)}")
        markers.append(Marker(clipped, args.marker, args.color, args.line_width))
    req = AttentionRequest(image.rgb, markers, args.class_name, classes, args.method, model_spec_from_args(args),
                           args.template, args.modality, () if args.no_marker_text else tuple(SUFFIXES),
                           not args.no_baseline, args.device)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    result.notes[:0] = notes
    d = result.to_dict()
    d["image"] = {"path": str(args.image), "window": image.window, "invert": image.invert}
    if args.out:
        out = Path(args.out)
        np.save(out, result.stack())
        d["out"] = {"path": str(out), "shape": [len(result.conditions), *result.image_hw],
                    "conditions": [c.name for c in result.conditions]}
    lines = []
    if result.provenance.untrained:
        lines.append("WARNING: untrained model (random weights): these maps mean nothing clinically.")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"{result.method} maps for {result.class_name!r}")
    for c in result.conditions:
        f = c.focus
        if f is None:
            focus = "focus      -  (no box)"
        elif f.fraction is None:
            focus = f"focus      -  (empty map; box covers {f.area_fraction:.1%})"
        else:
            focus = f"focus {f.fraction:6.1%} of mass in box ({f.area_fraction:.1%} of area, x{f.enrichment:.2f})"
        score = "" if c.score is None else f"  cos {c.score:+.3f}"
        lines.append(f"[{c.name}]  p={c.probability:6.1%}{score}  {focus}")
        lines += [f"    note: {n}" for n in c.notes]
    if args.out:
        lines.append(f"maps saved to {args.out} as {d['out']['shape']} (conditions in the order above)")
    emit(d, args.json, "\n".join(lines))
    return 0
