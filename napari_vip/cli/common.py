"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from ..models.device import DEVICES
from ..models.spec import DEFAULT_CLIP_ARCH, ModelSpec


def add_model_args(p) -> None:
    """``--model/--pretrained/--checkpoint/--untrained/--device``."""
    g = p.add_argument_group("CLIP model")
    g.add_argument("--model", default=None,
                   help=f"open_clip architecture (e.g. ViT-B-16) or hf-hub: id (default {DEFAULT_CLIP_ARCH})")
    g.add_argument("--pretrained", default=None, help="open_clip pretrained tag, e.g. openai (downloads)")
    g.add_argument("--checkpoint", default=None, help="local .pt/.pth/.bin/.safetensors open_clip state dict")
    g.add_argument("--untrained", action="store_true",
                   help="random weights of the real architecture, to try the workflow (results say untrained)")
    p.add_argument("--device", default="auto", choices=DEVICES)


def model_spec_from_args(args) -> ModelSpec:
    arch = args.model
    if arch is None:
        arch = "ViT-B-16" if (args.untrained or args.checkpoint or args.pretrained) else DEFAULT_CLIP_ARCH
    return ModelSpec(arch=arch, pretrained=args.pretrained, checkpoint=args.checkpoint, untrained=args.untrained)


def add_window_args(p) -> None:
    """``--window LOW HIGH`` and ``--invert`` for the model-input conversion."""
    p.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                   help="contrast limits (default: the image's min and max; uint8 colour passes through)")
    p.add_argument("--invert", action="store_true", help="invert the windowed image (MONOCHROME1)")


def read_image(path) -> np.ndarray:
    """Read a 2D image file (PNG/JPEG/TIFF/NumPy ``.npy``, or any format the napari-vip readers open).

    Returns the array as stored: ``(H, W)`` or ``(H, W, 3|4)``.
    """
    p = Path(path)
    if not p.exists():
        raise VipInputError(f"Image file {str(p)!r} does not exist.")
    if p.suffix.lower() == ".npy":
        return np.load(p, allow_pickle=False)
    try:
        from ..io import read_any  # DICOM/NIfTI, when available
    except ImportError:
        read_any = None
    if read_any is not None:
        arr = read_any(str(p))
        if arr is not None:
            return arr
    try:
        from skimage.io import imread

        return np.asarray(imread(str(p)))
    except Exception as exc:
        raise VipInputError(f"Could not read image {str(p)!r}: {exc}.") from None


def model_image(args):
    """The ``ModelImage`` for ``args.image`` with ``--window/--invert``."""
    from ..core.image import to_model_rgb

    arr = read_image(args.image)
    return to_model_rgb(arr, contrast_limits=args.window, invert=args.invert)


def emit(result: dict, as_json: bool, text: str) -> None:
    """Print ``result`` as JSON or ``text`` for people."""
    if as_json:
        json.dump(result, sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text.rstrip() + "\n")


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def stderr_progress(done: int, total: int, text: str = "") -> None:
    """Progress lines on stderr (stdout stays clean for ``--json``)."""
    if text:
        sys.stderr.write(f"[{done}/{total}] {text}\n" if total else f"... {text}\n")
