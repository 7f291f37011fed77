"""``napari-vip segment IMAGE --box X0 Y0 X1 Y1 [--point X Y --positive|--negative]... --sam-checkpoint PATH
--sam-arch vit_b [--medsam] [--untrained] --out MASK.png --json``."""

from __future__ import annotations

import argparse

from ..models.sam import SAM_ARCHS
from .common import add_window_args, emit, model_image, stderr_progress


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


def add_sam_args(p) -> None:
    """``--sam-checkpoint/--sam-arch/--medsam/--untrained/--device``."""
    g = p.add_argument_group("SAM model")
    g.add_argument("--sam-checkpoint", default=None, metavar="PATH",
                   help="local SAM or MedSAM state dict (.pth/.pt/.safetensors)")
    g.add_argument("--sam-arch", default="vit_b",
                   help=f"{', '.join(SAM_ARCHS)} (default vit_b), or a .json config of a custom SAM")
    g.add_argument("--medsam", action="store_true", help="MedSAM checkpoint: MedSAM's input normalisation")
    g.add_argument("--untrained", action="store_true",
                   help="random weights of the real architecture, to try the workflow (results say untrained)")
    g.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    g.add_argument("--no-disk-cache", action="store_true", help="do not read or write the embedding cache folder")


def sam_spec_from_args(args):
    from ..models.sam import SamSpec

    return SamSpec(arch=args.sam_arch, checkpoint=args.sam_checkpoint, medsam=args.medsam, untrained=args.untrained)


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="SAM/MedSAM mask from a box and/or clicks")
    p.add_argument("image", help="2D image file (PNG, JPEG, TIFF, .npy, DICOM, NIfTI)")
    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"), default=[],
                   help="box in (x, y) pixels; repeat for several objects (decoded as one batch)")
    p.add_argument("--point", nargs=2, metavar=("X", "Y"), action=_PointAction, dest="points", default=[],
                   help="a click in (x, y) pixels; follow with --positive (default) or --negative")
    p.add_argument("--positive", nargs=0, action=_LabelAction, help="the preceding --point is positive")
    p.add_argument("--negative", nargs=0, action=_LabelAction, help="the preceding --point is negative")
    p.add_argument("--single", action="store_true", help="one mask per prompt instead of SAM's three candidates")
    p.add_argument("--out", metavar="MASK.png", default=None,
                   help="label image of the best mask(s): object k has value k (PNG, TIFF or .npy)")
    p.add_argument("--sidecar", metavar="JSON", default=None,
                   help="annotations sidecar JSON (default: next to --out, same name + .json)")
    add_window_args(p)
    add_sam_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..core.annotations import AnnotationStore
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.segment import SegmentRequest

    image = model_image(args)
    points = args.points or []
    req = SegmentRequest(image.rgb, sam_spec_from_args(args), [tuple(b) for b in args.box],
                         [p[:2] for p in points], [p[2] for p in points], None, not args.single,
                         image.window, args.invert, device=args.device, disk_cache=not args.no_disk_cache)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    result.notes[:0] = list(image.notes)
    d = result.to_dict()
    d["image"] = {"path": str(args.image), "window": image.window, "invert": args.invert}
    if args.out:
        store = AnnotationStore(image.rgb.shape[:2])
        prov = result.provenance.to_dict()
        for b in range(result.masks.shape[0]):
            prompts = {"boxes_xyxy": [list(result.boxes_xyxy[b])] if result.boxes_xyxy else [],
                       "points_xy": result.points_xy.tolist(), "point_labels": result.point_labels.tolist()}
            store.commit(result.mask(b, 0), prompts=prompts, provenance=prov, score=float(result.scores[b, 0]))
        label_path, sidecar = store.save(args.out, args.sidecar)
        d["out"] = {"labels": label_path, "sidecar": sidecar}
    lines = []
    if result.provenance.untrained:
        lines.append("WARNING: untrained SAM (random weights): the masks mean nothing.")
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
