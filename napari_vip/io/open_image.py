"""Open any supported image file the way the napari reader would, without napari (the CLI twin).

:func:`open_image` dispatches DICOM (files and folders), NIfTI and JSRT ``.IMG`` to napari-vip's readers and
other files (PNG, JPEG, TIFF, NumPy) to tifffile / scikit-image / numpy. :func:`model_input_from_file`
then gives the uint8 RGB plane a model receives with the file's window and MONOCHROME1 inversion,
so the CLI sees what the GUI user sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from ..core.image import is_colour_picture


def open_image(path, window: str | None = None) -> tuple[np.ndarray, dict]:
    """Read the first image layer of ``path``.

    Parameters
    ----------
    path : str or Path
        DICOM file or folder, NIfTI, JSRT ``.IMG``, PNG/JPEG/TIFF/BMP, or ``.npy``.
    window : str, optional
        CT preset name for gray DICOM images (see :data:`napari_vip.io.windows.WINDOW_PRESETS`).

    Returns
    -------
    data : np.ndarray
        As the napari layer would hold it (see the readers for axis order).
    kwargs : dict
        napari layer keyword arguments; ``kwargs['metadata']`` has ``vip_window`` and ``vip_invert``.
    """
    from .dicom_reader import get_dicom_reader, read_dicom
    from .jsrt import is_jsrt_path, read_jsrt
    from .nifti import is_nifti_path, read_nifti

    p = Path(path)
    if not p.exists():
        raise VipInputError(f"{p} does not exist.")
    if is_nifti_path(p):
        layers = read_nifti(p)
    elif is_jsrt_path(p) and p.is_file():
        layers = read_jsrt(p)
    elif get_dicom_reader(str(p)) is not None:
        layers = read_dicom(p, window=window)
    elif p.suffix.lower() == ".npy":
        layers = [(np.load(p, allow_pickle=False), {"name": p.stem, "metadata": {}}, "image")]
    else:
        layers = [(_read_plain(p), {"name": p.stem, "metadata": {}}, "image")]
    data, kwargs, _ = layers[0]
    kwargs = dict(kwargs)
    if "rgb" not in kwargs:
        kwargs["rgb"] = is_colour_picture(data)
    return data, kwargs


def _read_plain(p: Path) -> np.ndarray:
    try:
        if p.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            return tifffile.imread(p)
        from skimage.io import imread

        return imread(p)
    except Exception as err:  # noqa: BLE001 - imageio/tifffile raise many types
        raise VipInputError(f"{p.name} could not be read as an image ({type(err).__name__}: {err}).") from err


@dataclass
class StoredPlane:
    """One 2D plane of a file, as stored.

    Attributes
    ----------
    data : np.ndarray
        ``(H, W)`` gray or ``(H, W, 3|4)`` colour, the file's dtype and values.
    rgb : bool
        Whether the last axis is colour.
    window : (float, float) or None
        The file's window (contrast limits), if it has one.
    invert : bool
        Whether the file asks to be shown inverted (MONOCHROME1).
    notes : list of str
        Which plane of a larger array it is.
    format : str or None
        ``"jsrt-img"`` for a JSRT ``.IMG`` file (the ``paper`` recipe then starts from the released JSRT
        loader, :func:`stored_model_rgb`); ``None`` for every other file.
    """

    data: np.ndarray
    rgb: bool
    window: tuple[float, float] | None
    invert: bool
    notes: list[str] = field(default_factory=list)
    format: str | None = None


def plane_from_file(path, index: tuple[int, ...] = (), window: str | None = None) -> StoredPlane:
    """One 2D plane of ``path`` as stored, with the file's window and inversion.

    Parameters
    ----------
    path : str or Path
    index : tuple of int
        Indices into the leading (non-plane) axes, e.g. ``(12,)`` for slice 12 of a volume.
        Empty means the middle plane of each leading axis.
    window : str, optional
        CT preset instead of the file's window.
    """
    data, kwargs = open_image(path, window=window)
    rgb = bool(kwargs.get("rgb"))
    lead = data.ndim - (3 if rgb else 2)
    if lead < 0:
        raise VipInputError(f"{Path(path).name} holds a {data.ndim}D array {data.shape}, not an image.")
    if not index:
        index = tuple(n // 2 for n in data.shape[:lead])
    if len(index) != lead:
        raise VipInputError(f"{Path(path).name} has {lead} axes before the image plane (shape {data.shape}); "
                            f"give {lead} index value(s), not {len(index)}.")
    for i, n in zip(index, data.shape[:lead]):
        if not 0 <= i < n:
            raise VipInputError(f"Index {index} is outside the array's leading shape {data.shape[:lead]}.")
    plane = data[tuple(index)]
    meta = kwargs.get("metadata") or {}
    limits = meta.get("vip_window", kwargs.get("contrast_limits"))
    if rgb and plane.dtype == np.uint8:
        limits = None
    notes = [f"plane {tuple(int(i) for i in index)} of an array of shape {data.shape}"] if lead else []
    return StoredPlane(np.asarray(plane), rgb, limits, bool(meta.get("vip_invert", False)), notes,
                       meta.get("vip_format"))


def stored_model_rgb(stored: StoredPlane, recipe: str = "paper", limits=None, invert: bool | None = None):
    """The full-resolution uint8 RGB a recipe starts from for a stored plane.

    As :func:`napari_vip.core.recipes.model_rgb`, except that a JSRT ``.IMG`` plane under the ``paper``
    recipe starts from the released JSRT loader (:func:`napari_vip.core.paper_render.jsrt_rgb`).

    Returns
    -------
    napari_vip.core.image.ModelImage
        ``rgb`` is ``(H, W, 3)`` uint8.
    """
    from ..core.image import ModelImage
    from ..core.paper_render import JSRT_WINDOW, jsrt_rgb
    from ..core.recipes import check_recipe, model_rgb
    from .jsrt import JSRT_FORMAT

    if check_recipe(recipe) == "paper" and stored.format == JSRT_FORMAT:
        low = JSRT_WINDOW[0] - JSRT_WINDOW[1] // 2
        return ModelImage(jsrt_rgb(stored.data), (float(low), float(low + JSRT_WINDOW[1])),
                          ["JSRT .IMG: the released JSRT loader (window 2048/4096, inverted, min-max)"], True)
    return model_rgb(stored.data, recipe, contrast_limits=stored.window if limits is None else limits,
                     invert=stored.invert if invert is None else invert, rgb=stored.rgb)


def model_input_from_file(path, index: tuple[int, ...] = (), window: str | None = None,
                          limits: tuple[float, float] | None = None, invert: bool | None = None,
                          recipe: str = "displayed"):
    """The model's uint8 RGB view of one 2D plane of ``path``, windowed as napari shows it (or as ``recipe`` says).

    Parameters
    ----------
    path, index, window
        Which plane, as :func:`plane_from_file`.
    limits : (float, float), optional
        Explicit contrast limits, overriding the file's window and ``window``.
    invert : bool, optional
        Override the file's inversion (MONOCHROME1).
    recipe : str
        ``displayed`` (the window above) or ``paper`` (min-max of the stored values, or the released JSRT
        loader for a JSRT ``.IMG``; window and inversion unused): see :mod:`napari_vip.core.recipes`.

    Returns
    -------
    napari_vip.core.image.ModelImage
        ``rgb`` is ``(H, W, 3)`` uint8.
    """
    stored = plane_from_file(path, index, window)
    image = stored_model_rgb(stored, recipe, limits, invert)
    image.notes[:0] = stored.notes
    return image
