"""The docks side by side in one window, as ``napari-vip gui`` opens them."""

import numpy as np


def test_a_background_segment_tab_does_not_start_work(make_window_viewer, qtbot):
    from napari_vip.widgets.classify import ClassifyWidget
    from napari_vip.widgets.segment import SegmentWidget

    viewer = make_window_viewer(show=True)
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


def test_gui_opens_every_dock_on_the_sample_ready_to_draw(make_window_viewer, qtbot, monkeypatch):
    import napari

    from napari_vip.layers import MARKERS_LAYER
    from napari_vip.widgets.launch import DOCKS, open_viewer

    made = []
    monkeypatch.setattr(napari, "Viewer", lambda show=True: made.append(make_window_viewer(show=show)) or made[-1])
    viewer = open_viewer(None, show=False)
    try:
        assert viewer.layers["retina"].rgb and viewer.layers["retina"].data.shape == (1411, 1411, 3)
        titles = [name.split(" (")[0] for name in viewer.window.dock_widgets]
        assert len(DOCKS) == 7 and all(t in titles for t in ("VIP classify", "VIP prompts", "VIP attention",
                                                             "VIP segment", "VIP learn", "VIP evaluate",
                                                             "VIP finetune"))
        assert viewer.layers.selection.active.name == MARKERS_LAYER
        assert viewer.layers[MARKERS_LAYER].mode == "add_rectangle"
    finally:
        for widget in viewer.window.dock_widgets.values():
            bridge = getattr(widget, "bridge", None)
            if bridge is not None:
                bridge.shutdown()


def test_classify_dock_opened_after_the_segment_dock_still_mirrors_arrows(make_viewer):
    from napari_vip.layers import ARROWS_LAYER, MARKERS_LAYER
    from napari_vip.widgets.classify import ClassifyWidget
    from napari_vip.widgets.segment import SegmentWidget

    viewer = make_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="img")
    segment = SegmentWidget(viewer)  # makes the markers layer first
    assert MARKERS_LAYER in viewer.layers
    segment.auto.setChecked(False)
    classify = ClassifyWidget(viewer)
    try:
        viewer.layers[MARKERS_LAYER].add_lines(np.array([[50, 10], [20, 40]]))
        assert ARROWS_LAYER in viewer.layers
    finally:
        classify.bridge.shutdown()
