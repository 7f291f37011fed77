"""Read NIfTI (``.nii``, ``.nii.gz``) volumes into napari in RAS+ canonical orientation.

The array is reoriented with :func:`nibabel.as_closest_canonical`, so data axis 0 runs towards the
patient's Right, axis 1 towards Anterior and axis 2 towards Superior (a 4th axis, e.g. time, is
moved to the front for napari's slider). ``scale`` is the voxel size in mm and
``metadata['vip_affine']`` the canonical ``(4, 4)`` affine from data indices (spatial axes) to RAS+ mm.
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


def read_nifti(path) -> list[tuple]:
    """Read a NIfTI-1/2 file as napari layer data.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    list of (data, kwargs, "image")
        ``data`` is ``(R, A, S)`` (3D), ``(R, A)`` (2D) or ``(T, R, A, S)`` (4D), with the file's
        scaling (scl_slope/scl_inter) applied; integer files without scaling stay integer.
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
        canon = nib.as_closest_canonical(img) if ndim >= 3 else img
        data = np.asanyarray(canon.dataobj)
    except Exception as err:  # noqa: BLE001
        raise VipInputError(f"{path.name}: the image data could not be read ({type(err).__name__}: {err}). "
                            "The file is probably truncated; copy it again.") from err
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    zooms = [float(z) for z in canon.header.get_zooms()]
    affine = np.asarray(canon.affine, dtype=np.float64)
    if ndim == 4:
        data = np.moveaxis(data, 3, 0)
        scale = (1.0, *zooms[:3])
    else:
        scale = tuple(zooms[:ndim])
    scale = tuple(s if s > 0 else 1.0 for s in scale)
    limits, source = _limits(data, canon.header)
    codes = "".join(nib.aff2axcodes(affine)) if ndim >= 3 else ""
    meta = {
        "vip_window": limits,
        "vip_invert": False,
        "vip_window_info": {"source": source},
        "vip_affine": affine,
        "vip_axes": "TRAS"[4 - ndim:] if ndim >= 3 else "ij",
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
