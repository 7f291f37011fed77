"""Rendering recipes: how a stored plane and a marker become the image the model sees.

``paper``
    As the released code of Denner et al. (MIDL 2025): stored values min-max normalised to 0..255,
    Pillow bicubic resize to 256x256, markers drawn with Pillow (see :mod:`napari_vip.core.paper_render`).
    The default of the command line and of dataset evaluation, so results compare with the paper's.
``displayed``
    As the user sees the layer: its contrast limits as the window (and its inversion), bilinear resize,
    markers drawn by :func:`napari_vip.core.markers.render_marker`.  The default of the docks.

Every result records its recipe (:func:`recipe_provenance`).
"""

from __future__ import annotations

import numpy as np

from .errors import VipInputError
from .image import ModelImage, check_plane, to_model_rgb
from .markers import render_marker
from .paper_render import paper_rgb, render_paper

RECIPES = ("paper", "displayed")
#: Recipe of the command line and dataset evaluation.
CLI_RECIPE = "paper"
#: Recipe of the docks.
GUI_RECIPE = "displayed"

_DESCRIPTIONS = {
    "paper": {"normalise": "min-max of stored values to 0..255 (truncated)", "resize": "bicubic 256x256",
              "draw": "Pillow ImageDraw", "crop": "full resolution, int() corners"},
    "displayed": {"normalise": "window = the layer's contrast limits", "resize": "bilinear 256x256",
                  "draw": "napari-vip rasteriser", "crop": "full resolution, rounded corners"},
}


def check_recipe(recipe: str) -> str:
    """``recipe`` if it is one of :data:`RECIPES`, else a :class:`VipInputError` naming them."""
    if recipe not in RECIPES:
        raise VipInputError(f"Unknown rendering recipe {recipe!r}; choose one of {', '.join(RECIPES)}.")
    return recipe


def recipe_provenance(recipe: str) -> dict:
    """``{"recipe": name, "recipe_steps": {...}, "pillow": version}``, recorded in every result made with
    ``recipe`` (Pillow's resize and drawing decide single pixels: see docs/rendering.md)."""
    import PIL

    return {"recipe": check_recipe(recipe), "recipe_steps": dict(_DESCRIPTIONS[recipe]), "pillow": PIL.__version__}


def model_rgb(image, recipe: str = CLI_RECIPE, *, contrast_limits=None, invert: bool = False,
              rgb: bool | None = None) -> ModelImage:
    """The full-resolution uint8 RGB image a recipe starts from.

    Parameters
    ----------
    image : array-like
        ``(H, W)`` gray or ``(H, W, 3|4)`` colour plane as stored, any real dtype.
    recipe : str
        One of :data:`RECIPES`.  ``paper`` ignores ``contrast_limits`` and ``invert``.
    contrast_limits, invert, rgb
        As :func:`napari_vip.core.image.to_model_rgb` (``displayed``).

    Returns
    -------
    ModelImage
        ``rgb`` is ``(H, W, 3)`` uint8; ``window`` is the ``(low, high)`` mapped to 0 and 255.
    """
    check_recipe(recipe)
    if recipe == "displayed":
        return to_model_rgb(image, contrast_limits=contrast_limits, invert=invert, rgb=rgb)
    arr = check_plane(image, rgb)
    notes = []
    data = arr
    finite = np.isfinite(arr)
    if not finite.all():
        if not finite.any():
            raise VipInputError("Every pixel of the image is NaN or infinite; there is nothing to show the model.")
        data = np.where(finite, arr, arr[finite].min())
        notes.append(f"{int((~finite).sum())} non-finite pixel(s) (NaN/inf) set to the image's minimum")
    if data.ndim == 3 and data.shape[-1] == 4:
        notes.append("alpha channel dropped")
    return ModelImage(paper_rgb(data), (float(data.min()), float(data.max())), notes, False)


def render(rgb: np.ndarray, marker, recipe: str = CLI_RECIPE) -> np.ndarray:
    """Draw one marker condition on a recipe's full-resolution image (:func:`model_rgb`).

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` uint8.
    marker : napari_vip.core.markers.Marker or None
        Box in ``(x, y)`` pixels of ``rgb``.

    Returns
    -------
    np.ndarray
        ``(256, 256, 3)`` uint8, or for ``crop`` the ``(h, w, 3)`` uint8 crop at full resolution.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"render needs (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if check_recipe(recipe) == "paper":
        return render_paper(rgb, marker)
    return render_marker(rgb, marker)


def render_for_model(image, marker, recipe: str = CLI_RECIPE, *, contrast_limits=None, invert: bool = False,
                     rgb: bool | None = None) -> np.ndarray:
    """The image the model sees for one marker condition, from the stored plane.

    ``render(model_rgb(image, recipe, ...).rgb, marker, recipe)``: see :func:`model_rgb` and :func:`render`.
    """
    base = model_rgb(image, recipe, contrast_limits=contrast_limits, invert=invert, rgb=rgb)
    return render(base.rgb, marker, recipe)
