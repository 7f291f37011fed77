"""``to_model_rgb``: the model sees the window and inversion the user sees (hand-computed values)."""

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.image import to_model_rgb
from napari_vip.io.windows import window_to_limits


def _gray(out):
    rgb = out.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    return rgb[..., 0]


def test_ct_hounsfield_soft_tissue_window():
    hu = np.array([[-1000, -160, -60, 40], [139, 239, 240, 3000]] * 2, dtype=np.int16)
    low, high = window_to_limits(40, 400)  # (-160, 239)
    g = _gray(to_model_rgb(hu, (low, high)))
    # (x + 160) * 255 / 399, rounded, clipped
    expected = [[0, 0, round(100 * 255 / 399), round(200 * 255 / 399)], [round(299 * 255 / 399), 255, 255, 255]]
    np.testing.assert_array_equal(g[:2], expected)
    assert to_model_rgb(hu, (low, high)).window == (-160.0, 239.0)


def test_lung_window():
    hu = np.full((4, 4), -600, dtype=np.int16)
    low, high = window_to_limits(-600, 1500)  # (-1350, 149)
    g = _gray(to_model_rgb(hu, (low, high)))
    assert g[0, 0] == round(750 * 255 / 1499)


def test_monochrome1_inversion():
    stored = np.array([[0, 1000, 2000, 4095]] * 4, dtype=np.uint16)
    g = _gray(to_model_rgb(stored, (0, 4095), invert=True))
    np.testing.assert_array_equal(g[0], [255, 255 - round(1000 * 255 / 4095), 255 - round(2000 * 255 / 4095), 0])


def test_uint16_default_is_data_range():
    data = np.array([[100, 200], [300, 500]] * 2, dtype=np.uint16).repeat(2, axis=1)
    out = to_model_rgb(data)
    assert out.window == (100.0, 500.0)
    g = _gray(out)
    np.testing.assert_array_equal(g[:2, ::2], [[0, round(100 * 255 / 400)], [round(200 * 255 / 400), 255]])


def test_float_with_nan():
    data = np.array([[0.0, 0.5, np.nan, 1.0]] * 4)
    out = to_model_rgb(data, (0.0, 1.0))
    g = _gray(out)
    np.testing.assert_array_equal(g[0], [0, 128, 0, 255])  # 127.5 rounds half to even -> 128
    assert any("non-finite" in note for note in out.notes)
    assert _gray(to_model_rgb(data, (0.0, 1.0), invert=True))[0, 2] == 255  # NaN is the window's low value
    with pytest.raises(VipInputError, match="NaN"):
        to_model_rgb(np.full((4, 4), np.nan))


def test_rgb_uint8_passes_through():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = to_model_rgb(rgb)
    np.testing.assert_array_equal(out.rgb, rgb)
    assert out.window is None
    np.testing.assert_array_equal(to_model_rgb(rgb, invert=True).rgb, 255 - rgb)


def test_rgba_drops_alpha():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    out = to_model_rgb(rgba)
    assert out.rgb.shape == (4, 4, 3) and np.all(out.rgb[..., 0] == 200) and np.all(out.rgb[..., 1:] == 0)
    assert "alpha channel dropped" in out.notes


def test_rgb_uint16_with_limits():
    rgb = np.zeros((4, 4, 3), dtype=np.uint16)
    rgb[..., 1] = 65535
    rgb[..., 2] = 32768
    out = to_model_rgb(rgb, (0, 65535), rgb=True)
    assert tuple(out.rgb[0, 0]) == (0, 255, round(32768 * 255 / 65535))


def test_bad_inputs():
    with pytest.raises(VipInputError, match="low value is above"):
        to_model_rgb(np.zeros((4, 4)), (10, 0))
    with pytest.raises(VipInputError, match="plane"):
        to_model_rgb(np.zeros((2, 4, 4, 4)))
    with pytest.raises(VipInputError, match="at least"):
        to_model_rgb(np.zeros((2, 2)))
    g = _gray(to_model_rgb(np.array([[0, 5], [5, 10]] * 2).repeat(2, axis=1), (5, 5)))  # zero width: threshold
    np.testing.assert_array_equal(g[:2, ::2], [[0, 0], [0, 255]])
