"""Sample images that ship inside installed packages; nothing is downloaded.

Each function returns napari layer data ``[(data, kwargs, "image")]`` for npe2's ``sample_data``.
"""

from __future__ import annotations


def retina():
    """scikit-image's fundus photograph, ``(1411, 1411, 3)`` uint8 RGB, as napari layer data."""
    from skimage import data

    return [(data.retina(), {"name": "retina", "rgb": True, "metadata": {"vip_modality": "fundus photograph"}},
             "image")]


def _pydicom_file(name: str):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:  # pragma: no cover - only if pydicom's bundled test files were removed
        from ..core.errors import VipInputError

        raise VipInputError(f"pydicom's test file {name} is not installed; reinstall pydicom.")
    return path


def ct_slice():
    """A CT slice from pydicom's test files (``CT_small.dcm``): ``(128, 128)`` int16 Hounsfield units.

    Read through napari-vip's DICOM reader; the file has no window, so the soft-tissue preset
    (center 40 HU, width 400 HU) is used.
    """
    from .dicom import read_dicom_file

    (data, kwargs, kind), = read_dicom_file(_pydicom_file("CT_small.dcm"), window="soft_tissue")
    kwargs["name"] = "CT slice (pydicom CT_small)"
    return [(data, kwargs, kind)]


def mr_slice():
    """An MR slice from pydicom's test files (``MR_small.dcm``): ``(64, 64)`` int16, window from the file."""
    from .dicom import read_dicom_file

    (data, kwargs, kind), = read_dicom_file(_pydicom_file("MR_small.dcm"))
    kwargs["name"] = "MR slice (pydicom MR_small)"
    return [(data, kwargs, kind)]


def shepp_logan():
    """scikit-image's Shepp–Logan head phantom: ``(400, 400)`` float64 in ``[0, 1]``."""
    from skimage import data

    image = data.shepp_logan_phantom()
    meta = {"vip_modality": "phantom", "vip_window": (0.0, 1.0), "vip_invert": False}
    return [(image, {"name": "Shepp-Logan phantom", "contrast_limits": (0.0, 1.0), "colormap": "gray",
                     "metadata": meta}, "image")]
