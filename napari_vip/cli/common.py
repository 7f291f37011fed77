"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys

import numpy as np

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
    """``--window LOW HIGH``, ``--preset NAME``, ``--invert`` and ``--index`` for the model-input conversion."""
    from ..io.windows import WINDOW_PRESETS

    p.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                   help="contrast limits (default: the file's window, else min and max; uint8 colour passes through)")
    p.add_argument("--preset", choices=sorted(WINDOW_PRESETS), default=None, help="CT window preset for DICOM")
    p.add_argument("--invert", action="store_true", default=None, help="invert the windowed image (MONOCHROME1)")
    p.add_argument("--index", nargs="+", type=int, default=(), metavar="I",
                   help="plane of a stack: indices into the axes before the image plane (default: the middle)")


def read_image(path) -> np.ndarray:
    """The array stored in an image file (any format :func:`napari_vip.io.open_image.open_image` reads)."""
    from ..io.open_image import open_image

    return open_image(path)[0]


def model_image(args):
    """The :class:`~napari_vip.core.image.ModelImage` of ``args.image`` as napari would show it."""
    from ..io.open_image import model_input_from_file

    return model_input_from_file(args.image, tuple(args.index), window=args.preset, limits=args.window,
                                 invert=args.invert)


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
