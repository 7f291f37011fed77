"""Read NIfTI (``.nii``, ``.nii.gz``) volumes into napari slices first, as DICOM series are presented.

The array is reoriented with :func:`nibabel.as_closest_canonical` (RAS+: stored axes towards the patient's
Right, Anterior, Superior), then presented as radiology viewers show axial images: data axis 0 is the slice
axis (inferior to superior, napari's slider), axis 1 the rows (anterior at the top, running posterior) and
axis 2 the columns (the patient's right on the viewer's left, running to the patient's left): ``(S, P, L)``
in index directions.  A 4th axis (e.g. time) goes first; a 2D image gets the same in-plane flips.
``scale`` is the voxel size in mm per data axis and ``metadata['vip_affine']`` the ``(4, 4)`` affine from
these data indices to RAS+ mm; ``vip_source_affine`` and ``vip_source_shape`` are the file's own, so labels
drawn on the layer are written back (:func:`napari_vip.io.labels_writers.write_labels_nifti`) on the source
voxels exactly, in the file's own shape and axis order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import VipInputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path) -> bool:
    """Whether ``path`` is named like a NIfTI file."""
    name = str(path).lower()
    return name.endswith(NIFTI_SUFFIXES)


def _limits(data: np.ndarray, header) -> tuple[tuple[float, float], str]:
    try:
        lo, hi = float(header["cal_min"]), float(header["cal_max"])
    except (KeyError, TypeError, ValueError):
        lo = hi = 0.0
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        return (lo, hi), "file: cal_min/cal_max"
    finite = data[np.isfinite(data)] if data.dtype.kind == "f" else data
    if finite.size == 0:
        return (0.0, 1.0), "data range"
    lo, hi = float(finite.min()), float(finite.max())
    return ((lo, hi) if hi > lo else (lo, lo + 1.0)), "data range"


def slices_first(shape_ras) -> np.ndarray:
    """``(4, 4)`` map from presented indices ``(k, i, j)`` to RAS+ canonical indices ``(x, y, z)``.

    ``x = X - 1 - j``, ``y = Y - 1 - i``, ``z = k`` for a canonical ``(X, Y, Z)`` array; the presented
    array is ``canonical[::-1, ::-1, :].transpose(2, 1, 0)``.
    """
    nx, ny = int(shape_ras[0]), int(shape_ras[1])
    return np.array([[0.0, 0.0, -1.0, nx - 1], [0.0, -1.0, 0.0, ny - 1], [1.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def read_nifti(path) -> list[tuple]:
    """Read a NIfTI-1/2 file as napari layer data.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of (data, kwargs, "image")
        ``data`` is ``(slices, rows, cols)`` (3D), ``(rows, cols)`` (2D) or ``(T, slices, rows, cols)``
        (4D), index directions ``(S, P, L)`` (see the module), with the file's scaling
        (scl_slope/scl_inter) applied; integer files without scaling stay integer.
        ``kwargs['scale']`` is the voxel size per data axis (mm; 1 for the time axis).

    Raises
    ------
    VipInputError
        Missing, damaged or non-NIfTI file, or more than 4 dimensions.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"{path} does not exist or is not a file.")
    try:
        img = nib.load(str(path))
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for bad files
        raise VipInputError(
            f"{path.name} could not be read as NIfTI ({type(err).__name__}: {err}). The file is damaged, "
            "truncated or not NIfTI; check it opens in another tool or export it again.") from err
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VipInputError(f"{path.name} is a {type(img).__name__}, not a NIfTI image.")
    ndim = len(img.shape)
    if ndim > 4:
        raise VipInputError(f"{path.name} has {ndim} dimensions {img.shape}; napari-vip reads up to 4 (x, y, z, t).")
    try:
        canon = nib.as_closest_canonical(img)
        data = np.asanyarray(canon.dataobj)
    except Exception as err:  # noqa: BLE001
        raise VipInputError(f"{path.name}: the image data could not be read ({type(err).__name__}: {err}). "
                            "The file is probably truncated; copy it again.") from err
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    zooms = [float(z) for z in canon.header.get_zooms()] + [1.0, 1.0]
    shape3 = tuple(data.shape[:3]) + (1,) * (3 - min(ndim, 3))
    affine = np.asarray(canon.affine, dtype=np.float64) @ slices_first(shape3)
    if ndim == 2:  # indices (i, j, 0) -> (X - 1 - j, Y - 1 - i, 0)
        affine = affine @ np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
        data = data[::-1, ::-1].T
        scale = (zooms[1], zooms[0])
    else:
        data = np.moveaxis(data[::-1, ::-1], 2, 0).swapaxes(1, 2) if ndim == 3 else \
            np.moveaxis(data[::-1, ::-1], (3, 2), (0, 1)).swapaxes(2, 3)
        scale = (zooms[2], zooms[1], zooms[0]) if ndim == 3 else (1.0, zooms[2], zooms[1], zooms[0])
    data = np.ascontiguousarray(data)
    scale = tuple(s if s > 0 else 1.0 for s in scale)
    limits, source = _limits(data, canon.header)
    codes = "".join(nib.aff2axcodes(affine)) if ndim >= 3 else ""
    meta = {
        "vip_window": limits,
        "vip_invert": False,
        "vip_window_info": {"source": source},
        "vip_affine": affine,
        "vip_source_affine": np.asarray(img.affine, dtype=np.float64),
        "vip_source_shape": tuple(int(n) for n in img.shape[:3]),
        "vip_axes": "TSPL"[4 - ndim:] if ndim >= 3 else "PL",
        "vip_orientation": codes,
        "vip_source": str(path),
        "vip_modality": "",
        "vip_notes": [],
    }
    name = path.name[:-7] if path.name.lower().endswith(".nii.gz") else path.stem
    kwargs = {"name": name, "scale": scale, "contrast_limits": limits, "colormap": "gray", "metadata": meta}
    return [(data, kwargs, "image")]


def get_nifti_reader(path):
    """npe2 ``get_reader``: :func:`read_nifti` for ``.nii``/``.nii.gz`` files, ``None`` otherwise."""
    if isinstance(path, (list, tuple)):
        return None
    return read_nifti if is_nifti_path(path) and Path(path).is_file() else None
