"""The classify dock in a headless viewer: markers layer, a rectangle, Classify, results."""

import json

import numpy as np
import pytest

from napari_vip.layers import ARROWS_LAYER, MARKERS_LAYER, markers_from_layer


@pytest.fixture
def dock(make_viewer, qtbot, tiny_clip_arch):
    from napari_vip.widgets.classify import ClassifyWidget

    viewer = make_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image((rng.random((60, 80)) * 1000).astype(np.uint16), name="xray")
    widget = ClassifyWidget(viewer)
    widget.model.set_untrained(tiny_clip_arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


def test_rectangle_then_classify_shows_probabilities(dock, qtbot, tmp_path):
    viewer, widget = dock
    markers = viewer.layers[MARKERS_LAYER]
    markers.add_rectangles(np.array([[10, 20], [30, 50]]))  # rows 10..30, cols 20..50
    widget.classes.setPlainText("pneumonia\nnormal\neffusion")
    job = widget.classify()
    assert job is not None
    qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)
    res = widget.last_result
    assert [c.name for c in res.conditions] == ["none", "1: bbox"]
    assert res.conditions[1].marker.box_xyxy == (20, 10, 50, 30)
    assert res.conditions[1].prompts[0] == "A chest x-ray with signs of pneumonia indicated by a red bounding box."
    table = widget.results.table
    assert (table.rowCount(), table.columnCount()) == (3, 2)
    shown = [float(widget.results.cell_text(i, 0).rstrip("%")) for i in range(3)]
    assert sum(shown) == pytest.approx(100, abs=0.2)
    assert "UNTRAINED" in widget.status.text()
    assert "xray" in viewer.layers  # the user's layers are untouched
    saved = json.loads(widget.save_results(str(tmp_path / "r.json")).read_text())
    assert saved["conditions"][1]["probabilities"]["pneumonia"] == pytest.approx(float(res.conditions[1].probabilities[0]))
    assert saved["untrained"] is True and "napari_vip_version" in saved["provenance"]
    np.testing.assert_array_equal(markers.data[0][[0, 2]], [[10, 20], [30, 50]])


def test_lines_become_arrows_with_a_vectors_mirror(dock):
    viewer, widget = dock
    markers = viewer.layers[MARKERS_LAYER]
    markers.add_lines(np.array([[50, 10], [20, 40]]))  # tail (row 50, col 10) -> head (row 20, col 40)
    assert ARROWS_LAYER in viewer.layers
    vec = viewer.layers[ARROWS_LAYER]
    assert vec.vector_style == "arrow"
    np.testing.assert_allclose(vec.data[0], [[50, 10], [-30, 30]])
    (m,) = markers_from_layer(markers, viewer.layers["xray"])
    assert m.style == "arrow" and m.arrow_xy == ((10.0, 50.0), (40.0, 20.0))


def test_ellipse_is_a_circle_marker_and_style_can_be_changed(dock):
    viewer, widget = dock
    markers = viewer.layers[MARKERS_LAYER]
    markers.add_ellipses(np.array([[10, 10], [10, 40], [30, 40], [30, 10]]))  # bounding-box corners
    (m,) = markers_from_layer(markers, viewer.layers["xray"])
    assert m.style == "circle" and m.box_xyxy == (10, 10, 40, 30)
    markers.selected_data = {0}
    widget.style.setCurrentText("crop")
    widget.color.setCurrentText("yellow")
    widget.apply_style_to_selected()
    (m,) = markers_from_layer(markers, viewer.layers["xray"])
    assert (m.style, m.color) == ("crop", "yellow")


def test_bad_input_gives_a_message_and_keeps_layers(dock):
    viewer, widget = dock
    widget.classes.setPlainText("normal\nNormal")
    assert widget.classify() is None
    assert "Duplicate" in widget.status.text()
    viewer.layers.remove("xray")
    widget.classes.setPlainText("a\nb")
    assert widget.classify() is None
    assert "No image layer" in widget.status.text()
    assert MARKERS_LAYER in viewer.layers


def test_show_what_the_model_sees(dock):
    viewer, widget = dock
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[10, 20], [30, 50]]))
    widget.show_model_view()
    seen = viewer.layers["VIP model view"].data
    assert seen.shape == (256, 256, 3) and np.all(seen == [255, 0, 0], axis=-1).any()


def test_plane_in_view_of_a_stack_is_classified(make_viewer, qtbot, tiny_clip_arch):
    from napari_vip.layers import model_input
    from napari_vip.widgets.classify import ClassifyWidget

    viewer = make_viewer()
    stack = np.zeros((2, 3, 20, 30), np.float32)
    stack[1, 2, 5:10, 5:10] = 7.0
    layer = viewer.add_image(stack, name="vol", contrast_limits=(0, 7))
    viewer.dims.current_step = (1, 2, 0, 0)
    img = model_input(layer, viewer.dims)
    assert img.rgb.shape == (20, 30, 3) and img.rgb[7, 7, 0] == 255 and img.rgb[0, 0, 0] == 0
    widget = ClassifyWidget(viewer)
    try:
        widget.model.set_untrained(tiny_clip_arch)
        widget.classes.setPlainText("a\nb")
        widget.classify()
        qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)
        assert widget.last_result.conditions[0].name == "none"
    finally:
        widget.bridge.shutdown()


def test_window_preset_sets_what_the_model_sees(dock):
    from napari_vip.layers import model_input

    viewer, widget = dock
    layer = viewer.add_image(np.array([-1000, -160, 40, 240], np.int16)[:, None].repeat(8, 1), name="ct")
    widget.image_combo.setCurrentText("ct")
    widget.apply_window_preset("soft_tissue")  # centre 40, width 400 -> (-160, 239)
    assert tuple(layer.contrast_limits) == (-160.0, 239.0)
    rgb = model_input(layer, viewer.dims).rgb[..., 0]
    assert rgb[0, 0] == 0 and rgb[1, 0] == 0 and rgb[2, 0] == round(200 * 255 / 399) and rgb[3, 0] == 255
