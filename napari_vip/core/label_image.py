"""Label images on disk: an integer array (``(H, W)`` or ``(..., H, W)``, 0 = background) as PNG, TIFF or NumPy.

Values are stored in the smallest integer type that holds them (:func:`labels_array`). No napari: the npe2
writers in :mod:`napari_vip.io.labels_writers` and the annotation store both use these functions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import VipInputError

LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".npy")


def labels_array(data) -> np.ndarray:
    """Labels as a plain integer ndarray in the smallest type that holds them.

    ``uint8`` / ``uint16`` / ``uint32`` for non-negative labels, else ``int16`` / ``int32`` / ``int64``.
    """
    arr = np.asarray(data)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise VipInputError("Labels must be whole numbers; this array holds fractions or NaN.")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise VipInputError(f"Labels have dtype {arr.dtype}; expected integers.")
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    kinds = (np.uint8, np.uint16, np.uint32, np.uint64) if lo >= 0 else (np.int8, np.int16, np.int32, np.int64)
    for dt in kinds:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dt, copy=False)
    return arr


def output_path(path, suffixes: tuple[str, ...]) -> Path:
    """``path`` with the first of ``suffixes`` appended unless it ends with one; its folder is created."""
    p = Path(path)
    if not str(p).lower().endswith(suffixes):
        p = p.with_name(p.name + suffixes[0])
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_tiff(path, data) -> str:
    """Write labels to a zlib-compressed TIFF (any number of dimensions; pages along the first axes)."""
    import tifffile

    p = output_path(path, (".tif", ".tiff"))
    arr = labels_array(data)
    if arr.dtype.itemsize == 8:  # 64-bit TIFF samples are poorly supported elsewhere
        raise VipInputError("Labels need 64-bit integers, which TIFF readers rarely support; save as .npy.")
    tifffile.imwrite(p, arr, compression="zlib", photometric="minisblack", metadata={"axes": _tiff_axes(arr.ndim)})
    return str(p)


def _tiff_axes(ndim: int) -> str:
    return ("TZYX"[4 - ndim:] if ndim <= 4 else "Q" * (ndim - 2) + "YX")


def write_png(path, data) -> str:
    """Write 2D labels to an 8- or 16-bit gray PNG (values 0..65535)."""
    from PIL import Image

    p = output_path(path, (".png",))
    arr = labels_array(data)
    if arr.ndim != 2:
        raise VipInputError(f"PNG holds one 2D image, but these labels have shape {arr.shape}; "
                            "save them as TIFF, NIfTI or NumPy instead.")
    if arr.dtype.kind == "i" or arr.dtype.itemsize > 2:
        raise VipInputError(f"PNG holds labels 0..65535; these range {int(arr.min())}..{int(arr.max())}. "
                            "Save them as TIFF, NIfTI or NumPy instead.")
    Image.fromarray(np.ascontiguousarray(arr)).save(p, format="PNG")
    return str(p)


def write_npy(path, data) -> str:
    """Write labels with :func:`numpy.save` (any shape, smallest integer dtype)."""
    p = output_path(path, (".npy",))
    np.save(p, labels_array(data), allow_pickle=False)
    return str(p)


WRITERS = {".png": write_png, ".tif": write_tiff, ".tiff": write_tiff, ".npy": write_npy}


def write_label_image(path, data) -> str:
    """Write ``data`` as PNG, TIFF or NumPy by the extension of ``path``; returns the path written."""
    p = Path(path)
    writer = WRITERS.get(p.suffix.lower())
    if writer is None:
        raise VipInputError(f"Save label images as {', '.join(LABEL_SUFFIXES)}; {p.name!r} has another extension.")
    return writer(p, data)


def read_label_image(path) -> np.ndarray:
    """Integer label image from PNG, TIFF or NumPy ``.npy``."""
    p = Path(path)
    if not p.is_file():
        raise VipInputError(f"Label image {str(p)!r} does not exist.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(p)
        elif suffix == ".png":
            from PIL import Image

            arr = np.asarray(Image.open(p))
        else:
            raise VipInputError(f"Label image {str(p)!r}: use {', '.join(LABEL_SUFFIXES)}.")
    except VipInputError:
        raise
    except Exception as exc:
        raise VipInputError(f"Could not read label image {str(p)!r}: {exc}.") from None
    if arr.dtype.kind not in "iub":
        raise VipInputError(f"{str(p)!r} holds {arr.dtype} values, not integer labels.")
    return arr
