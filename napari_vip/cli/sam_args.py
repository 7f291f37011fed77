"""The SAM model options shared by ``napari-vip segment`` and its volume mode."""

from __future__ import annotations

from ..models.device import DEVICES
from ..models.sam import SAM_ARCHS


def add_sam_args(p) -> None:
    """``--sam-checkpoint/--sam-arch/--medsam/--untrained/--device``."""
    g = p.add_argument_group("SAM model")
    g.add_argument("--sam-checkpoint", default=None, metavar="PATH",
                   help="local SAM or MedSAM state dict (.pth/.pt/.safetensors)")
    g.add_argument("--sam-arch", default="vit_b",
                   help=f"{', '.join(SAM_ARCHS)} (default vit_b), a .json config of a custom SAM, or for "
                        "--propagate a SAM 2 family model: sam2.1_hiera_t/_s/_b+/_l or medsam2")
    g.add_argument("--medsam", action="store_true", help="MedSAM checkpoint: MedSAM's input normalisation")
    g.add_argument("--untrained", action="store_true",
                   help="random weights of the real architecture, to try the workflow (results say untrained)")
    g.add_argument("--device", default="auto", choices=DEVICES)
    g.add_argument("--no-disk-cache", action="store_true", help="do not read or write the embedding cache folder")


def sam_spec_from_args(args):
    """The :class:`~napari_vip.models.sam.SamSpec` of ``--sam-arch/--sam-checkpoint/--medsam/--untrained``."""
    from ..models.sam import SamSpec

    return SamSpec(arch=args.sam_arch, checkpoint=args.sam_checkpoint, medsam=args.medsam, untrained=args.untrained)
