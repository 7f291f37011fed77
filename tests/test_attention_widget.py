"""The VIP attention dock in a headless viewer: heatmap layers, their names and limits, replacement, focus."""

import numpy as np
import pytest

from napari_vip.layers import MARKERS_LAYER, ensure_markers_layer


@pytest.fixture
def dock(make_viewer, tiny_clip_arch):
    from napari_vip.widgets.attention import AttentionWidget

    viewer = make_viewer()
    rng = np.random.default_rng(0)
    image = viewer.add_image((rng.random((60, 80)) * 1000).astype(np.uint16), name="xray", scale=(0.5, 0.5))
    widget = AttentionWidget(viewer)
    widget.follow.setChecked(False)
    widget.model.set_untrained(tiny_clip_arch)
    widget.model.device.setCurrentText("cpu")
    widget.classes.setText("pneumonia, normal")
    widget.refresh_classes()
    yield viewer, widget, image
    widget.bridge.shutdown()


def test_compute_adds_named_heatmaps_and_recompute_replaces_them(dock, qtbot):
    viewer, widget, image = dock
    markers = ensure_markers_layer(viewer, image)
    markers.add_rectangles(np.array([[10, 20], [30, 50]]))  # rows 10..30, cols 20..50 of the image's pixels
    widget.class_combo.setCurrentText("pneumonia")
    widget.method.setCurrentText("gradcam")
    assert widget.compute() is not None
    qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)

    base = "VIP attention: pneumonia / gradcam / "
    names = [layer.name for layer in widget.attention_layers()]
    assert names == [base + "none", base + "1: bbox", base + "1: bbox - none"]
    for name in names[:2]:
        layer = viewer.layers[name]
        assert tuple(layer.contrast_limits) == (0.0, 1.0)
        assert layer.colormap.name == "inferno" and layer.blending == "additive"
        assert layer.data.shape == (60, 80) and tuple(layer.scale) == (0.5, 0.5)
    diff = viewer.layers[names[2]]
    assert tuple(diff.contrast_limits) == (-1.0, 1.0) and diff.data.min() >= -1 and diff.data.max() <= 1
    assert diff.colormap.name == "vip_attention_diverging"
    # the marker's map is visible, the others wait in the layer list
    assert [viewer.layers[n].visible for n in names] == [False, True, False]
    assert widget.table.rowCount() == 2 and widget.focus_text(0) == "-" and widget.focus_text(1).endswith("%")
    assert "UNTRAINED" in widget.status.text()

    widget.colormap.setCurrentText("turbo")
    assert viewer.layers[names[1]].colormap.name == "turbo"

    first = widget.last_result
    widget.method.setCurrentText("rollout")
    widget.compute()
    qtbot.waitUntil(lambda: widget.last_result is not first, timeout=120_000)
    new = [layer.name for layer in widget.attention_layers()]
    assert new == [n.replace("gradcam", "rollout") for n in names]  # replaced, not piled up
    widget.compute()  # the same again: updated in place
    second = widget.last_result
    qtbot.waitUntil(lambda: widget.last_result is not second, timeout=120_000)
    assert [layer.name for layer in widget.attention_layers()] == new
    assert {"xray", MARKERS_LAYER} <= {layer.name for layer in viewer.layers}  # user layers untouched


def test_findings_follow_the_classify_dock_and_bad_class_is_refused(dock):
    from napari_vip.widgets.classify import ClassifyWidget

    viewer, widget, _ = dock
    classify = ClassifyWidget(viewer)  # shares the viewer's settings: no window needed
    classify.classes.setPlainText("glaucoma\nnormal")
    widget.follow.setChecked(True)
    widget.refresh_classes()
    assert widget.class_list() == ["glaucoma", "normal"]
    assert not widget.model_box.isEnabled()  # the classify dock's model is used
    assert [widget.class_combo.itemText(i) for i in range(widget.class_combo.count())] == ["glaucoma", "normal"]
    widget.class_combo.setCurrentText("pneumothorax")
    assert widget.compute() is None
    assert "not in the current list" in widget.status.text()
    assert widget.attention_layers() == []
    widget.follow.setChecked(False)
    assert widget.model_box.isEnabled()
