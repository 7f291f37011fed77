"""Sample images that ship inside installed packages; nothing is downloaded."""

from __future__ import annotations


def retina():
    """scikit-image's fundus photograph, ``(1411, 1411, 3)`` uint8 RGB, as napari layer data."""
    from skimage import data

    return [(data.retina(), {"name": "retina", "rgb": True, "metadata": {"vip_modality": "fundus photograph"}},
             "image")]
