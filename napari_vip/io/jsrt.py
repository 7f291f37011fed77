"""Read the JSRT data set's own ``.IMG`` files: raw 2048x2048 big-endian 16-bit pixels, no header.

Pixels are read as the released code of Denner et al. (MIDL 2025, ``JSRTDataset.load_image``) reads them,
``np.fromfile(path, dtype=">i2").reshape((2048, 2048))`` (signed; JSRT values are 12-bit, 0..4095, so
signed and unsigned readings are equal), and returned in native byte order.  The data set's pixel pitch is
0.175 mm.  High values are dark on film, so the layer is shown with the inverted gray colormap (as
MONOCHROME1 DICOM is) and the window of the released loader, centre 2048, width 4096 (contrast limits
``(0, 4096)``); the data are never inverted.

``metadata['vip_format'] == "jsrt-img"`` tells the ``paper`` recipe to start from the released JSRT
loader (:func:`napari_vip.core.paper_render.jsrt_rgb`) instead of the min-max of the stored values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import VipInputError
from ..core.paper_render import JSRT_SHAPE, JSRT_WINDOW

#: File endings of JSRT images (the data set writes ``.IMG``).
JSRT_SUFFIXES = (".img",)
#: Bytes of one JSRT image.
JSRT_BYTES = JSRT_SHAPE[0] * JSRT_SHAPE[1] * 2
#: Pixel pitch of the JSRT scans in mm.
JSRT_PIXEL_MM = 0.175
#: Value of ``metadata['vip_format']`` for a JSRT image.
JSRT_FORMAT = "jsrt-img"


def is_jsrt_path(path) -> bool:
    """Whether ``path`` is named like a JSRT image (``.IMG``, any case)."""
    return str(path).lower().endswith(JSRT_SUFFIXES)


def read_jsrt_pixels(path) -> np.ndarray:
    """``(2048, 2048)`` int16, native byte order: the raw big-endian pixels of a JSRT ``.IMG`` file.

    Raises
    ------
    VipInputError
        Missing file, or a size other than 2048 * 2048 * 2 bytes.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise VipInputError(f"{str(p)!r} cannot be read ({exc.strerror or exc}).") from None
    if size != JSRT_BYTES:
        raise VipInputError(
            f"{p.name} is {size} bytes; a JSRT .IMG image is 2048 x 2048 big-endian 16-bit pixels without a "
            f"header ({JSRT_BYTES} bytes). Check the file was copied completely, or convert it to PNG/TIFF.")
    raw = np.fromfile(p, dtype=">i2").reshape(JSRT_SHAPE)
    return raw.astype(np.int16)


def read_jsrt(path) -> list[tuple]:
    """npe2 reader: one Image layer ``(2048, 2048)`` int16 (rows, cols), 0.175 mm pixels, inverted gray."""
    p = Path(path[0] if isinstance(path, (list, tuple)) else path)
    data = read_jsrt_pixels(p)
    low, width = JSRT_WINDOW[0] - JSRT_WINDOW[1] // 2, JSRT_WINDOW[1]
    limits = (float(low), float(low + width))
    meta = {"vip_window": limits, "vip_invert": True,
            "vip_window_info": {"source": "JSRT loader window (centre 2048, width 4096)"},
            "vip_format": JSRT_FORMAT, "vip_source": str(p), "vip_modality": "DX", "vip_notes": []}
    kwargs = {"name": p.stem, "scale": (JSRT_PIXEL_MM, JSRT_PIXEL_MM), "contrast_limits": limits,
              "colormap": "gray_r", "metadata": meta}
    return [(data, kwargs, "image")]


def get_jsrt_reader(path):
    """npe2 ``get_reader``: :func:`read_jsrt` for one ``.IMG`` file, ``None`` otherwise.

    Files named ``.IMG`` are claimed even when their size is wrong, so the user reads what is wrong.
    """
    if isinstance(path, (list, tuple)):
        return read_jsrt if len(path) == 1 and is_jsrt_path(path[0]) and Path(path[0]).is_file() else None
    return read_jsrt if is_jsrt_path(path) and Path(path).is_file() else None
