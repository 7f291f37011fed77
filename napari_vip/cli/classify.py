"""``napari-vip classify IMAGE --box X0 Y0 X1 Y1 --marker circle --classes pneumonia normal --json``."""

from __future__ import annotations

from ..core.markers import COLORS, STYLES, Marker
from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES
from .common import add_model_args, add_window_args, emit, model_image, model_spec_from_args, stderr_progress


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="zero-shot CLIP classification with and without a visual marker")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)")
    p.add_argument("--classes", nargs="+", default=None, help="candidate findings (required unless --prompts)")
    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"), default=[],
                   help="marker box in (x, y) pixel coordinates; repeat for several markers")
    p.add_argument("--marker", default="circle", choices=STYLES, help="how to render each box")
    p.add_argument("--color", default="red", choices=list(COLORS))
    p.add_argument("--line-width", type=int, default=1, help="in pixels of the 256x256 render")
    p.add_argument("--template", default=DEFAULT_TEMPLATE)
    p.add_argument("--modality", default=DEFAULT_MODALITY)
    p.add_argument("--no-marker-text", action="store_true", help="leave the marker phrase out of the prompts")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-marker condition")
    p.add_argument("--save-rendered", metavar="PNG", default=None,
                   help="save what the model sees for the first marker (or the baseline) as PNG")
    add_window_args(p)
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--concepts", metavar="LIBRARY.json", default=None,
                   help="score each class by the mean of its concept embeddings from this symptom library "
                        "('default': the bundled library merged with yours); reports each class's best concept")
    p.add_argument("--concept-template", default=None,
                   help="sentence per concept with {c} {concept} {modality} {suffix} (with --concepts)")
    p.add_argument("--prompts", metavar="PROMPTS.pt", default=None,
                   help="learned prompts from `napari-vip learn`: class scores come from them (and their classes) "
                        "instead of zero-shot text prompts")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.coords import clip_box_xyxy
    from ..core.markers import render_marker
    from ..worker.classify import ClassifyRequest
    from ..worker.engine import Engine, ProgressReporter

    if not args.classes and not getattr(args, "prompts", None):
        from ..core.errors import VipInputError

        raise VipInputError("--classes is required (the candidate findings), unless --prompts PROMPTS.pt is given.")
    if getattr(args, "concepts", None):
        from .concepts import run_classify_with_concepts

        return run_classify_with_concepts(args)
    image = model_image(args)
    notes = list(image.notes)
    markers = []
    for box in args.box:
        clipped, was_clipped = clip_box_xyxy(box, image.rgb.shape[:2])
        if was_clipped:
            notes.append(f"box {tuple(box)} reaches outside the image; clipped to {tuple(round(v, 2) for v in clipped)}")
        markers.append(Marker(clipped, args.marker, args.color, args.line_width))
    req = ClassifyRequest(image.rgb, markers, args.classes, model_spec_from_args(args), args.template, args.modality,
                          () if args.no_marker_text else tuple(SUFFIXES), not args.no_baseline, args.device)
    req.prompts_path = getattr(args, "prompts", None)
    if args.save_rendered:
        from PIL import Image

        Image.fromarray(render_marker(image.rgb, markers[0] if markers else None)).save(args.save_rendered)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    result.notes[:0] = notes
    d = result.to_dict()
    d["image"] = {"path": str(args.image), "window": image.window, "invert": image.invert}
    lines = []
    if result.provenance.untrained:
        lines.append("WARNING: untrained model (random weights): these numbers mean nothing clinically.")
    lines += [f"note: {n}" for n in result.notes]
    width = max(len(c) for c in result.classes)
    for cond in result.conditions:
        lines.append(f"[{cond.name}]  {cond.prompts[0]}")
        for c, p in zip(result.classes, cond.probabilities):
            lines.append(f"  {c:<{width}}  {p:6.1%}  {'#' * int(round(p * 40))}")
    emit(d, args.json, "\n".join(lines))
    return 0
