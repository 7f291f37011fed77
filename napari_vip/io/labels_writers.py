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

import numpy as np

from ..core.errors import VipInputError
from ..core.label_image import labels_array, output_path, write_npy, write_png, write_tiff


def write_labels_tiff(path, data, attributes: dict | None = None) -> list[str]:
    """npe2 writer: :func:`napari_vip.core.label_image.write_tiff`."""
    return [write_tiff(path, data)]


def write_labels_png(path, data, attributes: dict | None = None) -> list[str]:
    """npe2 writer: :func:`napari_vip.core.label_image.write_png`."""
    return [write_png(path, data)]


def write_labels_npy(path, data, attributes: dict | None = None) -> list[str]:
    """npe2 writer: :func:`napari_vip.core.label_image.write_npy`."""
    return [write_npy(path, data)]


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

    p = output_path(path, (".nii.gz", ".nii"))
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
