"""``napari-vip attention IMAGE --box X0 Y0 X1 Y1 --marker circle --class pneumonia --method rollout --out heat.npy``."""

from __future__ import annotations

from ..models.attention import METHODS
from .common import (
    add_marker_args,
    add_model_args,
    add_window_args,
    emit,
    engine_for,
    image_block,
    marker_suffixes,
    markers_from_args,
    model_image,
    model_spec_from_args,
    recipe_of,
    stderr_progress,
    untrained_warning,
)


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
    add_marker_args(p)
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

    from ..core.errors import VipInputError
    from ..worker.attention import AttentionRequest, check_class
    from ..worker.engine import ProgressReporter

    if args.out and not args.out.lower().endswith(".npy"):
        raise VipInputError(f"--out {args.out!r}: give a .npy file name.")
    classes = args.classes or [args.class_name]
    check_class(args.class_name, classes)
    image = model_image(args)
    markers = markers_from_args(args)
    req = AttentionRequest(image_rgb=image.rgb, markers=markers, class_name=args.class_name, classes=classes,
                           method=args.method, model=model_spec_from_args(args), template=args.template,
                           modality=args.modality, marker_text=marker_suffixes(args),
                           include_baseline=not args.no_baseline, device=args.device, notes=list(image.notes),
                           recipe=recipe_of(args))
    result = engine_for(args).run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    d["image"] = image_block(args, image)
    if args.out:
        out = Path(args.out)
        np.save(out, result.stack())
        d["out"] = {"path": str(out), "shape": [len(result.conditions), *result.image_hw],
                    "conditions": [c.name for c in result.conditions]}
    lines = untrained_warning(result.provenance.untrained, "these maps mean nothing clinically")
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
