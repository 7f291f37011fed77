"""The one (row, col) <-> (x, y) conversion, and box clipping."""

import numpy as np
import pytest

from napari_vip.core.coords import box_xyxy_from_vertices_rc, clip_box_xyxy, rc_to_xy, scale_xy, xy_to_rc
from napari_vip.core.errors import VipInputError


def test_rc_xy_swap_round_trip():
    rc = np.array([[10.0, 20.0], [3.5, 7.25]])
    np.testing.assert_array_equal(rc_to_xy(rc), [[20, 10], [7.25, 3.5]])
    np.testing.assert_array_equal(xy_to_rc(rc_to_xy(rc)), rc)


def test_napari_rectangle_vertices_give_xyxy_box():
    vertices_rc = [[10, 20], [10, 60], [40, 60], [40, 20]]  # rows 10..40, cols 20..60
    assert box_xyxy_from_vertices_rc(vertices_rc) == (20, 10, 60, 40)


def test_scale_maps_pixel_edges_to_pixel_edges():
    np.testing.assert_allclose(scale_xy([[-0.5, -0.5], [99.5, 49.5]], (50, 100), (256, 256)),
                               [[-0.5, -0.5], [255.5, 255.5]])
    np.testing.assert_allclose(scale_xy([[0, 0]], (256, 256), (256, 256)), [[0, 0]])


def test_clip_box():
    assert clip_box_xyxy((10, 20, 30, 40), (100, 100)) == ((10, 20, 30, 40), False)
    assert clip_box_xyxy((30, 40, 10, 20), (100, 100)) == ((10, 20, 30, 40), False)
    assert clip_box_xyxy((-5, 90, 30, 140), (100, 100)) == ((0, 90, 30, 99), True)
    with pytest.raises(VipInputError, match="zero area"):
        clip_box_xyxy((5, 5, 5, 9), (100, 100))
    with pytest.raises(VipInputError, match="outside"):
        clip_box_xyxy((200, 200, 300, 300), (100, 100))
    with pytest.raises(VipInputError, match="non-finite"):
        clip_box_xyxy((0, 0, np.nan, 5), (100, 100))
