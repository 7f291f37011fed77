"""Save napari Labels layers (masks) as TIFF, PNG, NumPy or NIfTI.

Each ``write_labels_*`` function has the npe2 single-layer writer signature
``(path, data, attributes) -> list[str]``: ``data`` is the Labels array in napari's axis order
(e.g. ``(rows, cols)`` or ``(slices, rows, cols)``), ``attributes`` the layer state (``metadata``,
``scale``, ``name``...). Values are stored in the smallest integer type that holds them.

The NIfTI writer keeps the geometry of the image the mask was drawn on: it uses the ``(4, 4)``
``metadata['vip_affine']`` written by napari-vip's DICOM and NIfTI readers (from the Labels layer
itself, or from the one Image layer in the current viewer with the same shape), writes labels of a
NIfTI image on that file's own voxel grid, and falls back to the layer ``scale`` as a diagonal affine.
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


def source_metadata(attributes: dict | None, shape) -> tuple[dict | None, str]:
    """The napari-vip metadata (with ``vip_affine``) of the image these labels belong to, and where it came from.

    Looks at ``attributes['metadata']``, then at the Image layers of the current napari viewer (if any) with
    the same spatial shape; ``(None, reason)`` when neither has one.
    """
    meta = (attributes or {}).get("metadata") or {}
    if meta.get("vip_affine") is not None:
        return meta, "labels layer metadata"
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no napari, or no viewer: nothing to look at
        viewer = None
    if viewer is not None:
        found = []
        for layer in viewer.layers:
            layer_meta = getattr(layer, "metadata", {}) or {}
            data_shape = tuple(getattr(layer, "data", np.empty(0)).shape)
            if layer_meta.get("vip_affine") is not None and not getattr(layer, "rgb", False) \
                    and data_shape == tuple(shape):
                found.append((layer.name, layer_meta))
        if len(found) == 1:
            return found[0][1], f"image layer {found[0][0]!r}"
    return None, "no source affine"


def source_affine(attributes: dict | None, shape) -> tuple[np.ndarray | None, str]:
    """The ``(4, 4)`` affine of the image these labels belong to (:func:`source_metadata`), and where it came from."""
    meta, how = source_metadata(attributes, shape)
    return (None if meta is None else np.asarray(meta["vip_affine"], dtype=np.float64)), how


def to_source_grid(labels: np.ndarray, affine, source_affine, source_shape):
    """``(labels, affine)`` on the voxel grid of the file the image was read from, when the presented array is
    that file's array with axes permuted and flipped (as the NIfTI reader presents it); else unchanged.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)`` in the presented order; ``affine`` maps its indices (``(i, j, 0)`` for 2D)
        to RAS+ mm.
    source_affine, source_shape
        The file's own affine and spatial shape.
    """
    src_shape = tuple(int(n) for n in source_shape)
    if len(src_shape) != labels.ndim or labels.ndim not in (2, 3):
        return labels, affine
    arr3 = labels if labels.ndim == 3 else labels[..., None]
    shape3 = src_shape + (1,) * (3 - len(src_shape))
    index_map = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(affine, float)
    m = np.round(index_map)
    if not np.allclose(index_map, m, atol=1e-4):
        return labels, affine
    perm, flips = [], []
    for b in range(3):
        hits = np.flatnonzero(m[b, :3])
        if len(hits) != 1 or abs(m[b, hits[0]]) != 1:
            return labels, affine
        a, sign = int(hits[0]), int(m[b, hits[0]])
        if arr3.shape[a] != shape3[b] or m[b, 3] != (0 if sign > 0 else shape3[b] - 1):
            return labels, affine
        perm.append(a)
        flips.append(sign < 0)
    if sorted(perm) != [0, 1, 2]:
        return labels, affine
    out = arr3.transpose(perm)
    out = out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    if labels.ndim == 2:
        out = out[..., 0]
    return np.ascontiguousarray(out), np.asarray(source_affine, dtype=np.float64)


def write_labels_nifti(path, data, attributes: dict | None = None) -> list[str]:
    """Write 2D or 3D labels to NIfTI-1 (``.nii`` or ``.nii.gz``) on the source image's voxels.

    Labels drawn on an image read by napari-vip's NIfTI reader are written on that file's own voxel grid (its
    shape, axis order and affine: ``vip_source_affine``/``vip_source_shape``), so other tools overlay them
    directly; otherwise in napari's order with the affine that maps the image's data indices to RAS+ mm
    (``vip_affine``, e.g. a DICOM series'). Without one, the affine is ``diag(scale)`` and a note is added to the
    header description.
    """
    import nibabel as nib

    p = output_path(path, (".nii.gz", ".nii"))
    arr = labels_array(data)
    if arr.ndim not in (2, 3):
        raise VipInputError(f"NIfTI labels must be 2D or 3D; these have shape {arr.shape}.")
    if arr.dtype in (np.uint32, np.uint64, np.int64):
        arr = arr.astype(np.int32) if int(arr.max()) <= np.iinfo(np.int32).max else arr
    meta, how = source_metadata(attributes, arr.shape)
    affine = None if meta is None else np.asarray(meta["vip_affine"], dtype=np.float64)
    if affine is None:
        scale = list((attributes or {}).get("scale") or [1.0] * arr.ndim)[-arr.ndim:]
        affine = np.diag([*(float(s) for s in scale), *([1.0] * (3 - arr.ndim)), 1.0])
    elif meta.get("vip_source_affine") is not None and meta.get("vip_source_shape") is not None:
        arr, affine = to_source_grid(arr, affine, meta["vip_source_affine"], meta["vip_source_shape"])
    img = nib.Nifti1Image(arr, affine, dtype=arr.dtype)
    img.header["descrip"] = f"napari-vip labels; affine from {how}"[:79].encode()
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(p))
    return [str(p)]
