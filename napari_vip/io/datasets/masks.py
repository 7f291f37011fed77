"""Reading images and binary masks of a segmentation data set, with checks that name the file.

What :func:`read_binary_mask` reads (``(H, W)`` or ``(H, W, 3|4)`` with equal colour channels, PNG, TIFF, BMP,
JPEG or ``.npy``):

- ``0/255`` (medvlsm's form: "0 for background and 255 for foreground") and ``0/1`` masks, and bool arrays;
- label images: integers >= 0 with at most :data:`MAX_LABELS` distinct values, 0 the background; every
  non-zero label is foreground unless ``label=`` picks one;
- JPEG-compressed masks (some released data sets store masks as ``.jpg``, e.g. Kvasir-SEG): a JPEG whose
  pixels are all but :data:`JPEG_OFF_FRACTION` within :data:`JPEG_TOLERANCE` of 0 or of the maximum is read as
  ``value > max / 2`` (a note says so);

and refuses anything else (a photograph, a probability map, a colour picture) with a
:class:`~napari_vip.core.errors.VipInputError` that names the file and says how to fix it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import VipInputError

#: Most distinct values a label image may have (0 included).
MAX_LABELS = 64
JPEG_TOLERANCE = 48
JPEG_OFF_FRACTION = 0.01
JPEG_SUFFIXES = (".jpg", ".jpeg")


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise VipInputError(f"Mask file {str(path)!r} does not exist; check the mask path or name "
                            "(medvlsm layout: masks/<mask_name>).")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":
                return np.asarray(im)  # palette index = label
            if im.mode in ("1", "CMYK", "YCbCr", "HSV"):
                im = im.convert("L")
            return np.asarray(im)
    except Exception as exc:
        msg = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise VipInputError(f"Cannot read the mask {str(path)!r}: {msg}.") from None


def _to_plane(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
            if path.suffix.lower() in JPEG_SUFFIXES:
                return rgb.astype(np.float64).mean(axis=2)
            raise VipInputError(f"The mask {str(path)!r} is a colour picture (its R, G and B differ); save the mask "
                                "as one channel: 0 background, 255 (or 1, or a label) foreground.")
        arr = rgb[..., 0]
    if arr.ndim != 2:
        raise VipInputError(f"The mask {str(path)!r} has shape {arr.shape}; a mask is (H, W), one value per pixel.")
    return arr


def mask_from_array(arr, source: str = "<array>", label: int | None = None, notes: list | None = None) -> np.ndarray:
    """``(H, W)`` bool from a mask array by the rules of the module docstring (``source`` names it in errors)."""
    path = Path(source)
    arr = _to_plane(np.asarray(arr), path)
    if arr.dtype == bool:
        if label is not None:
            raise VipInputError(f"--label {label}: the mask {source!r} is binary, not a label image.")
        return arr.copy()
    if not np.issubdtype(arr.dtype, np.number):
        raise VipInputError(f"The mask {source!r} has dtype {arr.dtype}; masks hold numbers.")
    values = np.unique(arr)
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    if label is not None:
        if not integral or not np.any(values == label):
            present = [v.item() for v in values if v != 0][:20]
            raise VipInputError(f"Label {label} is not in the mask {source!r}; labels present: {present or 'none'}.")
        return arr == label
    jpeg = path.suffix.lower() in JPEG_SUFFIXES  # lossy: never a label image
    if integral and values.min() >= 0 and (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}
                                           or (len(values) <= MAX_LABELS and not jpeg)):
        return arr != 0
    if jpeg and values.max() > 0:
        top = float(values.max())
        a = arr.astype(np.float64)
        off = float(np.mean((a > JPEG_TOLERANCE) & (a < top - JPEG_TOLERANCE)))
        if off <= JPEG_OFF_FRACTION:
            if notes is not None:
                notes.append(f"{source}: JPEG-compressed mask read as value > {top / 2:g}")
            return a > top / 2
    shown = ", ".join(f"{v:g}" for v in values[:6].tolist()) + (" ..." if len(values) > 6 else "")
    raise VipInputError(
        f"The mask {source!r} is not binary: {len(values)} distinct values ({shown}). Masks must be 0/255, 0/1 or "
        f"a label image (at most {MAX_LABELS} integer labels, 0 = background); threshold a probability map or a "
        "grayscale picture first and save it as PNG.")


def read_binary_mask(path, shape=None, label: int | None = None, allow_empty: bool = True,
                     notes: list | None = None) -> np.ndarray:
    """Read a mask file as ``(H, W)`` bool (True = foreground).

    Parameters
    ----------
    path : str or Path
    shape : (int, int), optional
        The image's ``(H, W)`` (rows, cols): a mask of another size is refused, naming both sizes.
    label : int, optional
        Use only this label of a label image.
    allow_empty : bool
        With False, a mask without foreground is refused.
    notes : list, optional
        Receives a line when a lossy (JPEG) mask was thresholded.

    Raises
    ------
    VipInputError
        Missing or unreadable file, not a binary/label mask, wrong size, empty (when not allowed).
    """
    path = Path(path)
    m = mask_from_array(_load(path), str(path), label, notes)
    if shape is not None and tuple(m.shape) != tuple(shape[:2]):
        raise VipInputError(f"The mask {str(path)!r} is {m.shape[0]} x {m.shape[1]} (rows x cols) but its image is "
                            f"{shape[0]} x {shape[1]}; a mask must have its image's height and width.")
    if not allow_empty and not m.any():
        raise VipInputError(f"The mask {str(path)!r} is empty (no foreground pixel). Remove the sample, or mark it "
                            "as an image without the object (prompt 'no <class>', as medvlsm's data do).")
    return m


def read_rgb(path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (8-bit files as stored, as ``Image.open(...).convert("RGB")``
    in the released data module; deeper ones windowed to their min/max).  VipInputError naming a missing or
    unreadable file."""
    from ...core.datasets import read_rgb as _read_rgb

    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"Image file {str(path)!r} does not exist; check the image path or name "
                            "(medvlsm layout: images/<img_name>).")
    return _read_rgb(path)


def resize_mask_released(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """An ``(H, W)`` bool mask resized to ``hw`` = ``(h, w)`` as medvlsm's data module resizes ground truth:
    ``torchvision`` ``Resize(NEAREST_EXACT)`` on a PIL image, which torchvision hands to PIL's ``NEAREST``
    (not the same pixels as torch's ``nearest-exact`` on tensors, used for predicted masks:
    :func:`~napari_vip.core.image.resize_nearest_exact`)."""
    from PIL import Image

    m = np.asarray(mask)
    if tuple(m.shape[:2]) == (int(hw[0]), int(hw[1])):
        return m.astype(bool)
    im = Image.fromarray(np.where(m, 255, 0).astype(np.uint8))
    return np.asarray(im.resize((int(hw[1]), int(hw[0])), Image.NEAREST)) > 0


def write_mask_png(mask: np.ndarray, path) -> Path:
    """Write an ``(H, W)`` bool mask as an 8-bit PNG, 0 background and 255 foreground (medvlsm's form)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(np.asarray(mask), 255, 0).astype(np.uint8)).save(path)
    return path
