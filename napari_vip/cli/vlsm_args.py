"""``--vlsm FAMILY [--vlsm-checkpoint SOURCE | --vlsm-untrained [--vlsm-config JSON]] [--refine-sam]`` for
``napari-vip segment IMAGE --text "..."``: text -> mask with a VLSM (see docs/vlsm.md)."""

from __future__ import annotations


def add_vlsm_args(p) -> None:
    """The VLSM options of ``segment`` (used with ``--text``)."""
    from ..models.vlsm.spec import CLIPSEG_HUB_ID, FAMILIES

    g = p.add_argument_group("text to mask with a VLSM (with --text; instead of similarity -> SAM)")
    g.add_argument("--vlsm", choices=FAMILIES, default=None,
                   help="segment what --text names with this vision-language segmentation model")
    g.add_argument("--vlsm-checkpoint", default=None, metavar="SOURCE",
                   help=f"a Hugging Face folder, a .safetensors file, a folder written by `napari-vip finetune`, or a "
                        f"hub id (needs the network; default for clipseg: {CLIPSEG_HUB_ID})")
    g.add_argument("--vlsm-untrained", action="store_true",
                   help="the VLSM's architecture with random weights, to try the workflow (results say untrained)")
    g.add_argument("--vlsm-config", default=None, metavar="JSON",
                   help="architecture JSON for --vlsm-untrained or a bare .safetensors file")
    g.add_argument("--refine-sam", action="store_true",
                   help="hand the VLSM mask's box and logits to SAM / SAM 2 (--sam-checkpoint) and keep SAM's mask")


def vlsm_spec_from_args(args, family: str | None = None):
    """The :class:`~napari_vip.models.vlsm.VlsmSpec` of ``--vlsm/--vlsm-checkpoint/--vlsm-untrained/--vlsm-config``
    (the hub id of the family's released weights when no source is given)."""
    from ..models.vlsm import VlsmSpec
    from ..models.vlsm.spec import DEFAULT_SOURCES

    family = family or args.vlsm
    source = args.vlsm_checkpoint
    if source is None and not args.vlsm_untrained:
        source = DEFAULT_SOURCES[family]
    return VlsmSpec(family, source=source, untrained=args.vlsm_untrained, config=args.vlsm_config,
                    precision=getattr(args, "precision", "auto"))


def run_vlsm_segment(args, image) -> int:
    """``segment IMAGE --text ... --vlsm ...``: the request, the label image and sidecar, and the report."""
    from ..core.annotations import AnnotationStore
    from ..core.errors import VipInputError
    from ..worker.engine import ProgressReporter
    from ..worker.vlsm import VlsmSegmentRequest
    from .common import emit, engine_for, image_block, stderr_progress, untrained_warning
    from .sam_args import sam_spec_from_args

    if args.box or args.points:
        raise VipInputError("--text with --vlsm segments what the text names: leave out --box and --point.")
    sam = sam_spec_from_args(args) if args.refine_sam else None
    req = VlsmSegmentRequest(image.rgb, args.text, vlsm_spec_from_args(args), refine_sam=args.refine_sam, sam=sam,
                             multimask=False, window=image.window, invert=args.invert, device=args.device,
                             disk_cache=not args.no_disk_cache)
    res = engine_for(args).run(req, ProgressReporter(stderr_progress))
    seg = res.segment
    seg.notes[:0] = list(image.notes)
    d = res.to_dict()
    d["image"] = image_block(args, image)
    if args.out:
        store = AnnotationStore(image.rgb.shape[:2])
        if seg.masks[0, 0].any():
            prompts = {"text": res.text, "boxes_xyxy": [list(b) for b in seg.boxes_xyxy]}
            store.commit(seg.mask(0, 0), prompts=prompts, provenance=dict(seg.provenance.to_dict(), steps=res.steps),
                         score=float(seg.scores[0, 0]), source="text")
        label_path, sidecar = store.save(args.out, args.sidecar)
        d["out"] = {"labels": label_path, "sidecar": sidecar}
    lines = untrained_warning(res.steps[0].get("untrained"), "the mask means nothing", "VLSM")
    if res.refined:
        lines += untrained_warning(res.steps[1].get("untrained"), "the refined mask means nothing", "SAM")
    lines.append(f"{res.steps[0]['family']} ({res.steps[0]['method']}) {res.text!r}: mask of "
                 f"{int(res.vlsm_mask.sum())} px" + (f"; SAM refined it to {int(seg.masks[0, 0].sum())} px"
                                                     if res.refined else ""))
    lines += [f"note: {n}" for n in seg.notes]
    if args.out:
        lines.append(f"saved {d['out']['labels']} and {d['out']['sidecar']}")
    emit(d, args.json, "\n".join(lines))
    return 0
