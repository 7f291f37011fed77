"""Save napari Labels layers (masks) as TIFF, PNG, NumPy or NIfTI.

Each ``write_labels_*`` function has the npe2 single-layer writer signature
``(path, data, attributes) -> list[str]``: ``data`` is the Labels array in napari's axis order
(e.g. ``(rows, cols)`` or ``(slices, rows, cols)``), ``attributes`` the layer state (``metadata``,
``scale``, ``name``...). Values are stored in the smallest integer type that holds them.

The NIfTI writer keeps the geometry of the image the mask was drawn on: it uses the ``(4, 4)``
``metadata['vip_affine']`` written by napari-vip's DICOM and NIfTI readers (from the Labels layer
itself, or from the one Image layer in the current viewer with the same shape), and falls back to
the layer ``scale`` as a diagonal affine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import VipInputError


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


def _out(path, suffixes: tuple[str, ...]) -> Path:
    p = Path(path)
    if not str(p).lower().endswith(suffixes):
        p = p.with_name(p.name + suffixes[0])
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_labels_tiff(path, data, attributes: dict | None = None) -> list[str]:
    """Write labels to a zlib-compressed TIFF (any number of dimensions; pages along the first axes)."""
    import tifffile

    p = _out(path, (".tif", ".tiff"))
    arr = labels_array(data)
    if arr.dtype.itemsize == 8:  # 64-bit TIFF samples are poorly supported elsewhere
        raise VipInputError("Labels need 64-bit integers, which TIFF readers rarely support; save as .npy.")
    tifffile.imwrite(p, arr, compression="zlib", photometric="minisblack", metadata={"axes": _tiff_axes(arr.ndim)})
    return [str(p)]


def _tiff_axes(ndim: int) -> str:
    return ("TZYX"[4 - ndim:] if ndim <= 4 else "Q" * (ndim - 2) + "YX")


def write_labels_png(path, data, attributes: dict | None = None) -> list[str]:
    """Write 2D labels to an 8- or 16-bit gray PNG (values 0..65535)."""
    from PIL import Image

    p = _out(path, (".png",))
    arr = labels_array(data)
    if arr.ndim != 2:
        raise VipInputError(f"PNG holds one 2D image, but these labels have shape {arr.shape}; "
                            "save them as TIFF, NIfTI or NumPy instead.")
    if arr.dtype.kind == "i" or arr.dtype.itemsize > 2:
        raise VipInputError(f"PNG holds labels 0..65535; these range {int(arr.min())}..{int(arr.max())}. "
                            "Save them as TIFF, NIfTI or NumPy instead.")
    Image.fromarray(np.ascontiguousarray(arr)).save(p, format="PNG")
    return [str(p)]


def write_labels_npy(path, data, attributes: dict | None = None) -> list[str]:
    """Write labels with :func:`numpy.save` (any shape, smallest integer dtype)."""
    p = _out(path, (".npy",))
    np.save(p, labels_array(data), allow_pickle=False)
    return [str(p)]


def source_affine(attributes: dict | None, shape) -> tuple[np.ndarray | None, str]:
    """The ``(4, 4)`` affine of the image these labels belong to, and where it came from.

    Looks at ``attributes['metadata']['vip_affine']``, then at the Image layers of the current
    napari viewer (if any) with the same spatial shape; ``(None, reason)`` when neither has one.
    """
    meta = (attributes or {}).get("metadata") or {}
    if meta.get("vip_affine") is not None:
        return np.asarray(meta["vip_affine"], dtype=np.float64), "labels layer metadata"
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no napari, or no viewer: nothing to look at
        viewer = None
    if viewer is not None:
        found = []
        for layer in viewer.layers:
            aff = getattr(layer, "metadata", {}).get("vip_affine")
            data_shape = tuple(getattr(layer, "data", np.empty(0)).shape)
            if aff is not None and not getattr(layer, "rgb", False) and data_shape == tuple(shape):
                found.append((layer.name, aff))
        if len(found) == 1:
            return np.asarray(found[0][1], dtype=np.float64), f"image layer {found[0][0]!r}"
    return None, "no source affine"


def write_labels_nifti(path, data, attributes: dict | None = None) -> list[str]:
    """Write 2D or 3D labels to NIfTI-1 (``.nii`` or ``.nii.gz``) with the source image's affine.

    Data axes are written in napari's order, so the affine that maps the image's data indices
    to RAS+ mm (``vip_affine``) maps the labels' indices too. Without one, the affine is
    ``diag(scale)`` and a note is added to the header description.
    """
    import nibabel as nib

    p = _out(path, (".nii.gz", ".nii"))
    arr = labels_array(data)
    if arr.ndim not in (2, 3):
        raise VipInputError(f"NIfTI labels must be 2D or 3D; these have shape {arr.shape}.")
    if arr.dtype in (np.uint32, np.uint64, np.int64):
        arr = arr.astype(np.int32) if int(arr.max()) <= np.iinfo(np.int32).max else arr
    affine, how = source_affine(attributes, arr.shape)
    if affine is None:
        scale = list((attributes or {}).get("scale") or [1.0] * arr.ndim)[-arr.ndim:]
        affine = np.diag([*(float(s) for s in scale), *([1.0] * (3 - arr.ndim)), 1.0])
    img = nib.Nifti1Image(arr, affine, dtype=arr.dtype)
    img.header["descrip"] = f"napari-vip labels; affine from {how}"[:79].encode()
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(p))
    return [str(p)]
