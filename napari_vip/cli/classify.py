"""``napari-vip classify IMAGE --box X0 Y0 X1 Y1 --marker circle --classes pneumonia normal --json``."""

from __future__ import annotations

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
    save_rendered,
    stderr_progress,
    untrained_warning,
)


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="zero-shot CLIP classification with and without a visual marker")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI, JSRT .IMG)")
    p.add_argument("--classes", nargs="+", default=None, help="candidate findings (required unless --prompts)")
    add_marker_args(p)
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
    from ..worker.classify import ClassifyRequest
    from ..worker.engine import ProgressReporter

    if not args.classes and not getattr(args, "prompts", None):
        from ..core.errors import VipInputError

        raise VipInputError("--classes is required (the candidate findings), unless --prompts PROMPTS.pt is given.")
    if getattr(args, "concepts", None):
        from .concepts import run_classify_with_concepts

        return run_classify_with_concepts(args)
    image = model_image(args)
    markers = markers_from_args(args)
    req = ClassifyRequest(image_rgb=image.rgb, markers=markers, classes=args.classes, model=model_spec_from_args(args),
                          template=args.template, modality=args.modality, marker_text=marker_suffixes(args),
                          include_baseline=not args.no_baseline, device=args.device, notes=list(image.notes),
                          prompts_path=getattr(args, "prompts", None), recipe=recipe_of(args))
    if args.save_rendered:
        save_rendered(args.save_rendered, image.rgb, markers, recipe_of(args))
    result = engine_for(args).run(req, ProgressReporter(stderr_progress))
    d = result.to_dict()
    d["image"] = image_block(args, image)
    lines = untrained_warning(result.provenance.untrained)
    lines += [f"note: {n}" for n in result.notes]
    width = max(len(c) for c in result.classes)
    for cond in result.conditions:
        lines.append(f"[{cond.name}]  {cond.prompts[0]}")
        for c, p in zip(result.classes, cond.probabilities):
            lines.append(f"  {c:<{width}}  {p:6.1%}  {'#' * int(round(p * 40))}")
    emit(d, args.json, "\n".join(lines))
    return 0
