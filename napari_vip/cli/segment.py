"""``napari-vip segment IMAGE --box X0 Y0 X1 Y1 [--point X Y --positive|--negative]... --sam-checkpoint PATH
--sam-arch sam2.1_hiera_t|vit_b [--medsam] [--untrained] --out MASK.png --json``; ``--text "..." --vlsm clipseg
[--vlsm-checkpoint DIR] [--refine-sam]`` segments what the text names with a VLSM."""

from __future__ import annotations

import argparse

from .common import (
    add_window_args,
    clip_spec,
    emit,
    engine_for,
    image_block,
    model_image,
    stderr_progress,
    untrained_warning,
)
from .sam_args import add_sam_args, sam_spec_from_args
from .vlsm_args import add_vlsm_args, run_vlsm_segment


class _PointAction(argparse.Action):
    """``--point X Y`` appends a point whose label is set by the next ``--positive``/``--negative``
    (positive when neither follows)."""

    def __call__(self, parser, namespace, values, option_string=None):
        pts = getattr(namespace, "points", None) or []
        pts.append([float(values[0]), float(values[1]), 1])
        namespace.points = pts


class _LabelAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        pts = getattr(namespace, "points", None) or []
        if not pts:
            parser.error(f"{option_string} must follow a --point X Y")
        pts[-1][2] = 1 if option_string == "--positive" else 0


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="SAM 2 / SAM / MedSAM mask from a box and/or clicks (volumes: --propagate)")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)")
    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"), default=[],
                   help="box in (x, y) pixels; repeat for several objects (decoded as one batch)")
    p.add_argument("--point", nargs=2, metavar=("X", "Y"), action=_PointAction, dest="points", default=[],
                   help="a click in (x, y) pixels; follow with --positive (default) or --negative")
    p.add_argument("--positive", nargs=0, action=_LabelAction, help="the preceding --point is positive")
    p.add_argument("--negative", nargs=0, action=_LabelAction, help="the preceding --point is negative")
    t = p.add_argument_group("text to mask (instead of boxes and clicks)")
    t.add_argument("--text", default=None, metavar="PHRASE",
                   help="segment what the phrase names: CLIP patch-text similarity -> best region -> box and "
                        "positive points -> SAM")
    t.add_argument("--threshold", type=float, default=0.5, help="region threshold on the normalised map (0..1)")
    t.add_argument("--text-points", type=int, default=2, choices=(1, 2),
                   help="positive points from the region: its peak (1) or peak and centre (2)")
    t.add_argument("--heatmap", metavar="PATH", default=None, help="save the similarity map (.npy, or .png 0..255)")
    t.add_argument("--clip-model", default=None, help="open_clip ViT architecture or .json config "
                   "(default: BiomedCLIP from the hub; ViT-B-16 with --clip-untrained/--clip-checkpoint)")
    t.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag (downloads)")
    t.add_argument("--clip-checkpoint", default=None, help="local open_clip state dict")
    t.add_argument("--clip-untrained", action="store_true", help="CLIP with random weights (results say untrained)")
    v = p.add_argument_group("volumes (NIfTI file or DICOM folder)")
    v.add_argument("--slice", type=int, default=None, metavar="K", help="slice the prompts are drawn on")
    v.add_argument("--propagate", action="store_true",
                   help="propagate the object from --slice through the volume (SAM 2: video tracking; SAM: slice "
                        "by slice); --out .nii.gz keeps the source affine, .dcm writes DICOM-SEG on the series")
    v.add_argument("--axis", type=int, default=0, help="slice axis of the volume (default 0)")
    v.add_argument("--slice-range", nargs=2, type=int, metavar=("FIRST", "LAST"), default=None,
                   help="propagate no further than these slices (inclusive)")
    v.add_argument("--iou-threshold", type=float, default=0.7,
                   help="SAM slice by slice: stop where the predicted IoU falls below this")
    v.add_argument("--correct", nargs=5, type=float, action="append", default=[], metavar=("K", "X0", "Y0", "X1", "Y1"),
                   help="with --propagate: a correcting box on slice K (repeatable); SAM 2 tracks with every prompt, "
                        "SAM slice by slice from the last one, keeping the slices prompted before")
    v.add_argument("--embed-slices", action="store_true",
                   help="embed every slice of the volume into the disk cache, from --slice outward (what the segment "
                        "dock does in the background), and report where each came from")
    v.add_argument("--name", default="object 1", help="segment label of the propagated object (DICOM-SEG)")
    p.add_argument("--single", action="store_true", help="one mask per prompt instead of SAM's three candidates")
    p.add_argument("--out", metavar="MASK.png", default=None,
                   help="label image of the best mask(s): object k has value k (PNG, TIFF or .npy)")
    p.add_argument("--sidecar", metavar="JSON", default=None,
                   help="annotations sidecar JSON (default: next to --out, same name + .json)")
    add_vlsm_args(p)
    add_window_args(p)
    add_sam_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def clip_spec_from_args(args):
    """The CLIP spec of ``--clip-model/--clip-pretrained/--clip-checkpoint/--clip-untrained``."""
    return clip_spec(args.clip_model, args.clip_pretrained, args.clip_checkpoint, args.clip_untrained, args.precision)


def run(args) -> int:
    from ..core.annotations import AnnotationStore
    from ..core.errors import VipInputError
    from ..worker.engine import ProgressReporter
    from ..worker.segment import SegmentRequest, TextSegmentRequest

    if args.correct and not args.propagate:
        raise VipInputError("--correct adds a box on another slice to a propagation: use it with --propagate.")
    if args.propagate or args.embed_slices:
        from .volume import run_embed_slices, run_volume

        return run_volume(args) if args.propagate else run_embed_slices(args)
    if args.slice is not None and not args.index:
        args.index = (args.slice,)
    image = model_image(args)
    points = args.points or []
    if args.vlsm or args.vlsm_checkpoint or args.vlsm_untrained or args.refine_sam:
        from ..models.vlsm.spec import text_free_source

        if args.text is None and args.vlsm_checkpoint and text_free_source(args.vlsm_checkpoint):
            args.text, args.vlsm = "", args.vlsm or "clipseg"  # CoTexNet: segments what it learned, without text
        if args.text is None or not args.vlsm:
            raise VipInputError("A VLSM segments what --text names: give --text \"...\" and --vlsm FAMILY (a folder "
                                "written by napari-vip finetune --method cotexnet needs neither).")
        return run_vlsm_segment(args, image)
    text_result = None
    if args.text is not None:
        if args.box or points:
            raise VipInputError("--text makes its own box and points: leave out --box and --point.")
        req = TextSegmentRequest(image.rgb, sam_spec_from_args(args), text=args.text, clip=clip_spec_from_args(args),
                                 threshold=args.threshold, n_points=args.text_points, multimask=not args.single,
                                 window=image.window, invert=args.invert, device=args.device,
                                 disk_cache=not args.no_disk_cache)
        text_result = engine_for(args).run(req, ProgressReporter(stderr_progress))
        result = text_result.segment
    else:
        req = SegmentRequest(image.rgb, sam_spec_from_args(args), boxes_xyxy=[tuple(b) for b in args.box],
                             points_xy=[p[:2] for p in points], point_labels=[p[2] for p in points],
                             multimask=not args.single, window=image.window, invert=args.invert, device=args.device,
                             disk_cache=not args.no_disk_cache)
        result = engine_for(args).run(req, ProgressReporter(stderr_progress))
    result.notes[:0] = list(image.notes)
    d = text_result.to_dict() if text_result is not None else result.to_dict()
    if text_result is not None and args.heatmap:
        d["heatmap_path"] = _save_heatmap(args.heatmap, text_result.heatmap)
    d["image"] = image_block(args, image)
    if args.out:
        store = AnnotationStore(image.rgb.shape[:2])
        prov = result.provenance.to_dict()
        for b in range(result.masks.shape[0]):
            prompts = {"boxes_xyxy": [list(result.boxes_xyxy[b])] if result.boxes_xyxy else [],
                       "points_xy": result.points_xy.tolist(), "point_labels": result.point_labels.tolist()}
            if text_result is not None:
                prompts["text"] = text_result.text
                prov = dict(prov, steps=text_result.steps)
            store.commit(result.mask(b, 0), prompts=prompts, provenance=prov, score=float(result.scores[b, 0]),
                         source="text" if text_result is not None else "sam")
        label_path, sidecar = store.save(args.out, args.sidecar)
        d["out"] = {"labels": label_path, "sidecar": sidecar}
    lines = untrained_warning(result.provenance.untrained, "the masks mean nothing", "SAM")
    if text_result is not None:
        lines += untrained_warning(text_result.steps[0].get("untrained"), "the similarity map means nothing", "CLIP")
        reg = text_result.region
        lines.append(f"text {text_result.text!r}: region of {int(reg.region.sum())} px (of {reg.n_regions} above "
                     f"{reg.threshold:g}), box {tuple(round(v, 1) for v in reg.box_xyxy)}")
    lines += [f"note: {n}" for n in result.notes]
    for b in range(result.masks.shape[0]):
        areas = result.masks[b].reshape(result.masks.shape[1], -1).sum(-1)
        cands = ", ".join(f"score {s:.3f} area {int(a)} px" for s, a in zip(result.scores[b], areas))
        lines.append(f"object {b + 1}: {cands}")
    lines.append(f"embedding: {result.embedding_source}; decode {result.timings_ms['decode']:.1f} ms")
    if args.out:
        lines.append(f"saved {d['out']['labels']} and {d['out']['sidecar']}")
    emit(d, args.json, "\n".join(lines))
    return 0


def _save_heatmap(path, heatmap) -> str:
    from pathlib import Path

    import numpy as np

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if str(path).lower().endswith(".npy"):
        np.save(path, np.asarray(heatmap, np.float32), allow_pickle=False)
    else:
        from PIL import Image

        Image.fromarray(np.clip(np.rint(np.asarray(heatmap) * 255), 0, 255).astype(np.uint8)).save(path)
    return str(path)
