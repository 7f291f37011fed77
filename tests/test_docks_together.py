"""The docks side by side in one window, as ``napari-vip gui`` opens them."""

import numpy as np


def test_a_background_segment_tab_does_not_start_work(make_napari_viewer, qtbot):
    from napari_vip.widgets.classify import ClassifyWidget
    from napari_vip.widgets.segment import SegmentWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64), np.uint8), name="img")
    classify, segment = ClassifyWidget(viewer), SegmentWidget(viewer)
    seg_dock = viewer.window.add_dock_widget(segment, name="VIP segment", tabify=True)
    cls_dock = viewer.window.add_dock_widget(classify, name="VIP classify", tabify=True)
    cls_dock.raise_()
    qtbot.waitUntil(lambda: not segment.in_view(), timeout=5000)
    try:
        viewer.layers["VIP markers"].add_rectangles(np.array([[10, 10], [30, 30]]))
        qtbot.wait(500)  # past the embedding debounce
        assert not classify.bridge.client.busy  # neither an embedding nor a segmentation was queued
        seg_dock.raise_()
        qtbot.waitUntil(segment.in_view, timeout=5000)
        qtbot.waitUntil(lambda: classify.bridge.client.busy or segment.last_embed is not None, timeout=5000)
    finally:
        classify.bridge.shutdown()
