"""The SAM model options shared by ``napari-vip segment`` and its volume mode."""

from __future__ import annotations

from ..core.errors import VipInputError
from ..models.device import DEVICES
from ..models.sam import SAM_ARCHS
from ..models.sam2_family import SAM2_ARCHS


def add_sam_args(p) -> None:
    """``--sam-checkpoint/--sam-arch/--medsam/--untrained/--device/--precision``."""
    from .common import add_precision_arg

    g = p.add_argument_group("SAM model")
    g.add_argument("--sam-checkpoint", default=None, metavar="PATH",
                   help="local SAM/MedSAM state dict, or a SAM 2.1/MedSAM2 file ({'model': state_dict})")
    g.add_argument("--sam-arch", default="vit_b",
                   help=f"SAM: {', '.join(SAM_ARCHS)} (default vit_b); SAM 2 family: {', '.join(SAM2_ARCHS)} "
                        "(hiera-t: the fastest encoder); or a .json config of a custom SAM or SAM 2")
    g.add_argument("--medsam", action="store_true", help="MedSAM checkpoint: MedSAM's input normalisation")
    g.add_argument("--untrained", action="store_true",
                   help="random weights of the real architecture, to try the workflow (results say untrained)")
    g.add_argument("--device", default="auto", choices=DEVICES)
    add_precision_arg(g)
    g.add_argument("--no-disk-cache", action="store_true", help="do not read or write the embedding cache folder")


def sam_spec_from_args(args):
    """The model spec of ``--sam-arch/--sam-checkpoint/--medsam/--untrained/--precision``: a
    :class:`~napari_vip.models.sam2_family.Sam2Spec` for SAM 2 family architectures, else a
    :class:`~napari_vip.models.sam.SamSpec`."""
    from ..models.sam import SamSpec
    from ..models.sam2_family import Sam2Spec, is_sam2_arch

    if is_sam2_arch(args.sam_arch):
        if args.medsam:
            raise VipInputError("--medsam is for SAM 1 MedSAM checkpoints; for MedSAM2 use --sam-arch medsam2.")
        return Sam2Spec(args.sam_arch, checkpoint=args.sam_checkpoint, untrained=args.untrained,
                        precision=args.precision)
    return SamSpec(arch=args.sam_arch, checkpoint=args.sam_checkpoint, medsam=args.medsam, untrained=args.untrained,
                   precision=args.precision)
