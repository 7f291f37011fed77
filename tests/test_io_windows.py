"""Window presets and the DICOM window -> contrast limits formula."""

import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.io.windows import WINDOW_PRESETS, apply_window_preset, preset_limits, window_to_limits


def test_linear_window_matches_dicom_formula():
    # PS3.3 C.11.2.1.2.1: x <= c - 0.5 - (w - 1) / 2 -> black, x > c - 0.5 + (w - 1) / 2 -> white
    assert window_to_limits(40, 400) == (-160.0, 239.0)
    assert window_to_limits(-600, 1500) == (-1350.0, 149.0)
    assert window_to_limits(40, 400, "LINEAR_EXACT") == (-160.0, 240.0)
    with pytest.raises(VipInputError):
        window_to_limits(40, 0.5)


def test_presets():
    assert set(WINDOW_PRESETS) >= {"lung", "mediastinum", "soft_tissue", "bone", "brain"}
    assert preset_limits("Soft tissue") == preset_limits("soft_tissue") == window_to_limits(40, 400)
    assert preset_limits("brain") == (0.0, 79.0)  # center 40, width 80
    with pytest.raises(VipInputError, match="choose one of: lung"):
        preset_limits("liverish")


def test_apply_preset_to_layer():
    import numpy as np
    from napari.layers import Image

    layer = Image(np.linspace(-50, 50, 100).reshape(10, 10), metadata={})
    low, high = apply_window_preset(layer, "bone")
    assert tuple(layer.contrast_limits) == pytest.approx((low, high))
    assert layer.metadata["vip_window"] == (low, high)
    assert layer.metadata["vip_window_info"]["source"] == "preset: bone"
