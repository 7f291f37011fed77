"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys

import numpy as np

from ..models.device import DEVICES
from ..models.precision import PRECISIONS
from ..models.spec import DEFAULT_CLIP_ARCH, ModelSpec

PRECISION_HELP = ("dtype the model runs in: auto (bfloat16 on CPUs with AMX or AVX-512-BF16, bfloat16/float16 on "
                  "CUDA GPUs, else float32), fp32, bf16 or fp16; recorded in the result's provenance")


def add_precision_arg(p) -> None:
    """``--precision auto|fp32|bf16|fp16`` (beside ``--device``)."""
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)


def add_model_args(p) -> None:
    """``--model/--pretrained/--checkpoint/--untrained/--device/--precision``."""
    g = p.add_argument_group("CLIP model")
    g.add_argument("--model", default=None,
                   help=f"open_clip architecture (e.g. ViT-B-16) or hf-hub: id (default {DEFAULT_CLIP_ARCH})")
    g.add_argument("--pretrained", default=None, help="open_clip pretrained tag, e.g. openai (downloads)")
    g.add_argument("--checkpoint", default=None, help="local .pt/.pth/.bin/.safetensors open_clip state dict")
    g.add_argument("--untrained", action="store_true",
                   help="random weights of the real architecture, to try the workflow (results say untrained)")
    p.add_argument("--device", default="auto", choices=DEVICES)
    add_precision_arg(p)


def model_spec_from_args(args) -> ModelSpec:
    """The CLIP spec of ``--model/--pretrained/--checkpoint/--untrained/--precision``."""
    return clip_spec(args.model, args.pretrained, args.checkpoint, args.untrained, getattr(args, "precision", "auto"))


def clip_spec(arch, pretrained, checkpoint, untrained: bool, precision: str = "auto") -> ModelSpec:
    """A CLIP spec from command-line values.

    Parameters
    ----------
    arch : str or None
        open_clip architecture, ``hf-hub:`` id or .json config; ``None``: BiomedCLIP from the hub, or
        ViT-B-16 when a tag, a checkpoint or random weights are asked for.
    pretrained, checkpoint : str or None
    untrained : bool
    precision : str
        ``auto|fp32|bf16|fp16``.
    """
    if arch is None:
        arch = "ViT-B-16" if (untrained or checkpoint or pretrained) else DEFAULT_CLIP_ARCH
    return ModelSpec(arch=arch, pretrained=pretrained, checkpoint=checkpoint, untrained=untrained, precision=precision)


def add_marker_args(p) -> None:
    """``--box``, ``--marker``, ``--color``, ``--line-width`` and the prompt options of marker conditions
    (``--template``, ``--modality``, ``--no-marker-text``, ``--no-baseline``)."""
    from ..core.markers import COLORS, STYLES
    from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE
    from ..core.recipes import CLI_RECIPE, RECIPES

    p.add_argument("--box", nargs=4, type=float, action="append", metavar=("X0", "Y0", "X1", "Y1"), default=[],
                   help="marker box in (x, y) pixel coordinates; repeat for several markers")
    p.add_argument("--marker", default="circle", choices=STYLES, help="how to render each box")
    p.add_argument("--color", default="red", choices=list(COLORS))
    p.add_argument("--line-width", type=int, default=1, help="in pixels of the 256x256 render")
    p.add_argument("--template", default=DEFAULT_TEMPLATE)
    p.add_argument("--modality", default=DEFAULT_MODALITY)
    p.add_argument("--no-marker-text", action="store_true", help="leave the marker phrase out of the prompts")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-marker condition")
    p.add_argument("--recipe", default=None, choices=RECIPES,
                   help=f"how the image is made and markers drawn: 'paper' (the paper's released code: min-max "
                        f"to 0..255, bicubic 256x256, Pillow drawing) or 'displayed' (the window, as the docks do); "
                        f"default {CLI_RECIPE}, or displayed with --prompts (learned prompts see images as stored)")


def markers_from_args(args) -> list:
    """The markers of ``args.box`` (``(x0, y0, x1, y1)`` pixels), ``args.marker``, ``args.color`` and
    ``args.line_width``, as drawn: the request's handler clips them to the image and notes what it clipped."""
    from ..core.markers import Marker

    return [Marker(tuple(box), args.marker, args.color, args.line_width) for box in args.box]


def marker_suffixes(args) -> tuple[str, ...]:
    """The marker phrases to add to the prompts: none with ``--no-marker-text``."""
    from ..core.prompts import SUFFIXES

    return () if args.no_marker_text else tuple(SUFFIXES)


def save_rendered(path, rgb: np.ndarray, markers, recipe: str) -> None:
    """Save what the model sees for the first marker (the plain image when there is none) as an image file.

    ``rgb`` is the ``(H, W, 3)`` uint8 image of ``recipe`` (:func:`model_image`).
    """
    from PIL import Image

    from ..core.recipes import render

    Image.fromarray(render(rgb, markers[0] if markers else None, recipe)).save(path)


def image_block(args, image) -> dict:
    """The result JSON's ``image`` entry: the file and how it was windowed for the model."""
    return {"path": str(args.image), "window": image.window, "invert": image.invert}


def untrained_warning(untrained: bool, meaning: str = "these numbers mean nothing clinically",
                      model: str = "model") -> list[str]:
    """``["WARNING: untrained <model> (random weights): <meaning>."]`` when ``untrained``, else ``[]``."""
    return [f"WARNING: untrained {model} (random weights): {meaning}."] if untrained else []


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


def recipe_of(args) -> str:
    """The rendering recipe of a command (:mod:`napari_vip.core.recipes`).

    ``--recipe`` when given; else ``paper`` for the commands that draw markers, except with learned prompts
    (``--prompts``), which were trained on images read as stored and are scored the same way (``displayed``);
    ``displayed`` (the window) for the commands without the option.
    """
    from ..core.recipes import CLI_RECIPE

    if not hasattr(args, "recipe"):
        return "displayed"
    if args.recipe:
        return args.recipe
    return "displayed" if getattr(args, "prompts", None) else CLI_RECIPE


def model_image(args):
    """The :class:`~napari_vip.core.image.ModelImage` of ``args.image`` under :func:`recipe_of` ``(args)``:
    as napari would show it (``displayed``) or as the paper's code loads it (``paper``)."""
    from ..io.open_image import model_input_from_file

    recipe = recipe_of(args)
    image = model_input_from_file(args.image, tuple(args.index), window=args.preset, limits=args.window,
                                  invert=args.invert, recipe=recipe)
    if recipe == "paper" and (args.window is not None or args.preset or args.invert):
        image.notes.append("--recipe paper normalises the stored values by their min and max: --window, --preset "
                           "and --invert apply only with --recipe displayed")
    return image


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


def stderr_progress(done: int, total: int, text: str = "", data: dict | None = None) -> None:
    """Progress lines on stderr (stdout stays clean for ``--json``)."""
    if text:
        sys.stderr.write(f"[{done}/{total}] {text}\n" if total else f"... {text}\n")


# -- where requests run: this process, or a model server ---------------------------------------------------------
#: Commands that take no ``--server``: no requests, or a language model asked from this computer.
LOCAL_ONLY = ("gui", "serve", "symptoms", "sentences")


def add_server_args(subparsers) -> None:
    """``--server URL`` and ``--token-file F`` on every command that runs requests."""
    for name, p in subparsers.choices.items():
        if name in LOCAL_ONLY:
            continue
        g = p.add_argument_group("model server")
        g.add_argument("--server", default=None, metavar="URL",
                       help="run on a `napari-vip serve` server (http[s]://host:port) instead of this computer")
        g.add_argument("--token-file", default=None, metavar="F",
                       help="the server's token (first line of F; default: $NAPARI_VIP_TOKEN)")


def engine_for(args):
    """What runs the requests of a command: an :class:`~napari_vip.worker.engine.Engine` here, or with
    ``--server URL`` a :class:`~napari_vip.serve.remote_client.RemoteEngine` (same ``run(request, progress)``)."""
    url = getattr(args, "server", None)
    if url:
        from ..serve.remote_client import RemoteEngine
        from ..serve.token import read_token

        return RemoteEngine(url, read_token(getattr(args, "token_file", None)))
    from ..worker.engine import Engine

    return Engine()
