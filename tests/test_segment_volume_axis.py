"""Propagation follows the axis napari's slider walks (``dims.order``), not always axis 0."""

from __future__ import annotations

import numpy as np
import pytest
from test_segment_volume_widget import dock  # noqa: F401 - the segment dock with a tiny untrained SAM

from napari_vip.layers import MARKERS_LAYER


def test_scrolled_axis_slice_position_and_box_across_follow_dims_order(make_viewer):
    from napari_vip.widgets.segment_volume import marker_box_across, scrolled_axis, slice_position

    viewer = make_viewer()
    layer = viewer.add_image(np.zeros((6, 30, 40), np.int16), name="ct")
    assert scrolled_axis(layer, viewer.dims) == 0
    viewer.dims.order = (0, 2, 1)  # transposed view: still slices along axis 0
    assert scrolled_axis(layer, viewer.dims) == 0
    viewer.dims.order = (2, 0, 1)  # rolled: the slider walks axis 2
    viewer.dims.set_current_step(2, 17)
    assert scrolled_axis(layer, viewer.dims) == 2 and slice_position(layer, viewer.dims, 2) == 17
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_current_step(1, 9)
    assert scrolled_axis(layer, viewer.dims) == 1 and slice_position(layer, viewer.dims, 1) == 9
    # a box drawn in that plane (a 3D markers layer): rows = axis 0, columns = axis 2 of the slice across axis 1
    markers = viewer.add_shapes(ndim=3, name=MARKERS_LAYER)
    markers.add_rectangles(np.array([[1, 9, 5], [1, 9, 25], [4, 9, 25], [4, 9, 5]]))
    assert marker_box_across(viewer, layer, 1) == pytest.approx((5.0, 1.0, 25.0, 4.0))


def test_the_dock_propagates_along_the_scrolled_axis(dock):  # noqa: F811
    from napari_vip.models.propagation import SlicePrompt

    viewer, widget = dock
    viewer.add_image(np.zeros((4, 48, 64), np.uint16), name="ct")
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    assert widget.volume.request().axis == 0  # the default view
    viewer.dims.order = (2, 0, 1)
    viewer.dims.set_current_step(2, 30)
    req = widget.volume.request([SlicePrompt(30, box_xyxy=(10, 1, 40, 3))])
    assert req.axis == 2 and req.slice_range is None
    # the dock's 2D markers cannot say where a box lies across axis 2: a message, nothing sent
    assert widget.volume.propagate() is None
    assert "along axis 2" in widget.status.text()
