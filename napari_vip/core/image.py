"""Turn what the user sees into the uint8 RGB image the models receive.

Every model request (markers, segmentation, attention) goes through :func:`to_model_rgb`, so the
model sees the same window (contrast limits) and inversion as the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import VipInputError

#: Smallest image side, in pixels, that the models accept.
MIN_SIDE = 4


@dataclass
class ModelImage:
    """The model input and what had to be done to make it.

    Attributes
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` uint8, rows first.
    window : tuple of float
        ``(low, high)`` data values mapped to 0 and 255 (``None`` for uint8 RGB passed through).
    notes : list of str
        Things the user should know (non-finite pixels replaced, alpha dropped...).
    invert : bool
        Whether the windowed image was inverted.
    """

    rgb: np.ndarray
    window: tuple[float, float] | None
    notes: list[str] = field(default_factory=list)
    invert: bool = False


def is_colour_picture(arr: np.ndarray) -> bool:
    """Whether an array read from a file is a colour picture: uint8 with a trailing axis of 3 (RGB) or 4 (RGBA),
    as a PNG or JPEG decodes, ``(..., H, W, 3|4)``; a gray volume ``(Z, H, W)`` of scans is not."""
    return bool(arr.ndim >= 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8)


def check_plane(image, rgb: bool | None = None) -> np.ndarray:
    """Validate a 2D plane: ``(H, W)`` gray or ``(H, W, 3|4)`` colour. Returns it as an ndarray.

    ``rgb=None`` guesses: a trailing axis of 3 or 4 is colour.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number)) or np.iscomplexobj(arr):
        raise VipInputError(f"Image has dtype {arr.dtype}; napari-vip needs a real-valued numeric image.")
    if rgb is None:
        rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    want = 3 if rgb else 2
    if arr.ndim != want or (rgb and arr.shape[-1] not in (3, 4)):
        kind = "an (H, W, 3/4) colour image" if rgb else "an (H, W) gray image"
        raise VipInputError(
            f"Expected {kind} plane, got an array of shape {arr.shape}. "
            "For stacks and volumes, pick the slice in the viewer (or pass a 2D image to the CLI)."
        )
    h, w = arr.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        raise VipInputError(f"Image is {w}x{h} pixels; the models need at least {MIN_SIDE}x{MIN_SIDE}.")
    return arr


def to_model_rgb(image, contrast_limits=None, invert: bool = False, rgb: bool | None = None) -> ModelImage:
    """Window a 2D plane to uint8 RGB, as the user sees it.

    Parameters
    ----------
    image : array-like
        ``(H, W)`` gray or ``(H, W, 3|4)`` colour plane, any real dtype.
    contrast_limits : (float, float), optional
        Window: ``low`` maps to 0 and ``high`` to 255, values outside are clipped.  Default: the
        finite min and max of the plane, except uint8 images, which keep their values (gray: window
        (0, 255); colour: passed through unchanged), as napari shows them.
    invert : bool
        Invert the result (a ``gray_r`` colormap, DICOM MONOCHROME1).
    rgb : bool, optional
        Whether the last axis is colour; guessed from the shape when ``None``.

    Returns
    -------
    ModelImage
        ``rgb`` is ``(H, W, 3)`` uint8.
    """
    arr = check_plane(image, rgb)
    notes: list[str] = []
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
        notes.append("alpha channel dropped")
    data = arr.astype(np.float64, copy=False)
    finite = np.isfinite(data)
    if not finite.all():
        if not finite.any():
            raise VipInputError("Every pixel of the image is NaN or infinite; there is nothing to show the model.")
        bad = int((~finite).sum())
        notes.append(f"{bad} non-finite pixel(s) (NaN/inf) shown as the window's low value")
    window: tuple[float, float] | None
    if contrast_limits is None and arr.dtype == np.uint8 and arr.ndim == 2:
        contrast_limits = (0.0, 255.0)  # as napari shows uint8: stored values, not stretched
    if contrast_limits is None and arr.ndim == 3 and arr.dtype == np.uint8:
        out = arr.copy()
        window = None
    else:
        if contrast_limits is None:
            vals = data[finite]
            low, high = float(vals.min()), float(vals.max())
        else:
            low, high = (float(v) for v in contrast_limits)
            if not (np.isfinite(low) and np.isfinite(high)):
                raise VipInputError(f"Contrast limits {contrast_limits} must be finite numbers.")
        window = (low, high)
        span = high - low
        if span < 0:
            raise VipInputError(f"Contrast limits {contrast_limits}: the low value is above the high value.")
        if span == 0:  # a constant image, or a zero-width window: a threshold
            scaled = np.where(data > low, 255.0, 0.0)
        else:
            scaled = (data - low) * 255.0 / span  # one rounding: exact halves stay halves
        scaled = np.where(finite, scaled, 0.0)
        out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if invert:
        out = 255 - out
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return ModelImage(np.ascontiguousarray(out), window, notes, bool(invert))


def resize_rgb(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` uint8 to ``size_hw`` (bilinear, anti-aliased when shrinking); uint8 out."""
    from PIL import Image

    if rgb.shape[:2] == tuple(size_hw):
        return rgb.copy()
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize((size_hw[1], size_hw[0]), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8).copy()


def resize_nearest_exact(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize an ``(H, W)`` array to ``hw`` = ``(h, w)`` with nearest-exact sampling (source index
    ``floor((i + 0.5) * H / h)``), as ``torchvision``'s ``InterpolationMode.NEAREST_EXACT`` and ``torch``'s
    ``mode="nearest-exact"`` do."""
    H, W = mask.shape[:2]
    h, w = int(hw[0]), int(hw[1])
    rows = np.minimum(np.floor((np.arange(h) + 0.5) * (H / h)).astype(np.int64), H - 1)
    cols = np.minimum(np.floor((np.arange(w) + 0.5) * (W / w)).astype(np.int64), W - 1)
    return mask[rows[:, None], cols[None, :]]
