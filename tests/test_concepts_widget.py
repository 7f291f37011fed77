"""The "VIP prompts" dock in a headless viewer: edit concepts, library, language model, region, classify."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtCore import Qt
from skimage.draw import disk

from napari_vip.core.symptoms import bundled_library_path, load_library
from napari_vip.layers import ensure_markers_layer


@pytest.fixture
def dock(make_viewer, tiny_clip_arch, tmp_path, monkeypatch):
    from napari_vip.widgets.prompts import PromptsWidget

    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(tmp_path / "config"))
    for var in ("NAPARI_VIP_LLM_URL", "NAPARI_VIP_LLM_MODEL"):
        monkeypatch.delenv(var, raising=False)
    viewer = make_viewer()
    img = np.full((100, 150), 50, dtype=np.uint8)
    rr, cc = disk((20, 25), 8)
    img[rr, cc] = 230
    viewer.add_image(img, name="xray")
    widget = PromptsWidget(viewer)
    widget.model.set_untrained(tiny_clip_arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


def test_fill_edit_reorder_disable_and_save(dock, tmp_path):
    viewer, widget = dock
    assert widget.classes() == ["pneumonia", "normal"]
    widget.fill_from_library()
    bundled = load_library(bundled_library_path())
    assert [t for t, _ in widget.concepts["pneumonia"]] == bundled["pneumonia"]
    assert [t for t, _ in widget.concepts["normal"]] == bundled["normal (chest x-ray)"]  # modality-aware
    lst = widget.concept_list
    assert lst.count() == len(bundled["pneumonia"])
    lst.item(0).setCheckState(Qt.Unchecked)  # disable
    lst.item(1).setText("air bronchogram")  # edit
    lst.setCurrentRow(2)
    widget.move_selected(-1)  # reorder: row 2 goes up
    widget.new_concept.setText("  dense   white lobe ")
    widget._add_typed()
    enabled = widget.enabled_concepts()["pneumonia"]
    assert enabled == [bundled["pneumonia"][2], "air bronchogram"] + bundled["pneumonia"][3:] + ["dense white lobe"]
    widget.select_class("normal")  # switching keeps the edits
    widget.select_class("pneumonia")
    assert widget.enabled_concepts()["pneumonia"] == enabled
    assert widget.concept_list.item(1).text() == bundled["pneumonia"][2]
    assert widget.concept_list.item(0).checkState() == Qt.Unchecked
    path = tmp_path / "mine.json"
    widget.save_to(path)
    saved = load_library(path)
    assert saved["pneumonia"] == enabled  # disabled concepts are not saved
    widget.fill_from_library()  # filling again only brings back the descriptor that was edited away
    texts = [t for t, _ in widget.concepts["pneumonia"]]
    assert len(texts) == len(bundled["pneumonia"]) + 2 and texts[-1] == bundled["pneumonia"][1]
    widget.add_class("my finding")
    widget.fill_from_library()
    assert "Not in the library: my finding" in widget.status.text()


def test_describe_region_from_the_box_then_from_the_mask(dock):
    viewer, widget = dock
    shapes = ensure_markers_layer(viewer, viewer.layers["xray"])
    shapes.add_rectangles(np.array([[10, 15], [30, 35]]))  # rows 10..30, cols 15..35: the bright disc
    widget.select_class("pneumonia")
    widget.keyword.setText("nodule")
    text = widget.describe_selected_region()
    assert widget.last_region.source == "box"
    assert text == "1 round small bright nodule, located in the top left of the image."
    assert widget.enabled_concepts()["pneumonia"][-1] == text
    # a segmentation in the current-mask layer wins over the box
    mask = np.zeros((100, 150), dtype=np.uint8)
    mask[70:90, 20:140] = 1
    viewer.add_labels(mask, name="VIP current mask")
    widget.variant.setCurrentIndex(1)  # p2: shape + keyword
    assert widget.describe_selected_region() == "elongated nodule"
    assert widget.last_region.source == "mask"
    # bad input: several markers and none selected, with no mask
    viewer.layers.remove("VIP current mask")
    shapes.add_rectangles(np.array([[50, 50], [60, 60]]))
    shapes.selected_data = set()
    assert widget.describe_selected_region() is None
    assert "select the one" in widget.status.text()


def test_language_model_button_says_why_without_an_endpoint(dock):
    viewer, widget = dock
    assert widget.generate_with_llm() is False
    assert "No language model endpoint" in widget.status.text()
    assert "No language model endpoint" in widget.llm_btn.toolTip()
    assert not widget.llm_busy and widget.llm_btn.isEnabled()


def test_language_model_runs_without_blocking_the_viewer(dock, qtbot):
    from test_llm_descriptors import FakeLlm

    viewer, widget = dock
    fake = FakeLlm()
    fake.content = '["hazy opacity", "air bronchogram"]'
    fake.mode = "slow"  # 1.5 s before it answers
    try:
        widget.llm_url.setText(fake.url)
        widget.llm_model.setText("m")
        widget.select_class("pneumonia")
        t0 = time.perf_counter()
        assert widget.generate_with_llm() is True
        assert time.perf_counter() - t0 < 0.5
        assert widget.llm_busy and not widget.llm_btn.isEnabled()
        assert widget.generate_with_llm() is False and "already running" in widget.status.text()
        qtbot.waitUntil(lambda: not widget.llm_busy, timeout=60_000)  # the worker may be starting
    finally:
        fake.close()
    assert [t for t, _ in widget.concepts["pneumonia"]] == ["hazy opacity", "air bronchogram"], widget.status.text()
    assert "from the language model" in widget.status.text()
    assert load_library()["pneumonia"][-2:] == ["hazy opacity", "air bronchogram"]  # cached in the user's library


def test_classify_with_concepts_shows_the_best_concept(dock, qtbot):
    viewer, widget = dock
    widget.set_classes(["nodule", "normal"])
    widget.add_concepts("nodule", ["small round opacity", "coin lesion"])
    widget.add_concepts("normal", ["clear lung fields"])
    shapes = ensure_markers_layer(viewer, viewer.layers["xray"])
    shapes.add_ellipses(np.array([[10, 15], [30, 35]]))
    assert widget.classify() is not None
    qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)
    res = widget.last_result
    assert [c.name for c in res.conditions] == ["none", "1: circle"]
    assert widget.best.rowCount() == 2 and widget.best.columnCount() == 2
    assert widget.best_concept_text(1, 1).startswith("clear lung fields (")
    assert widget.best_concept_text(0, 1).split(" (")[0] == res.conditions[1].best_concept["nodule"]
    assert "UNTRAINED" in widget.status.text()
    assert "xray" in viewer.layers


def test_a_finding_without_enabled_concepts_is_refused(dock):
    viewer, widget = dock
    widget.set_classes(["nodule", "normal"])
    widget.add_concepts("nodule", ["coin lesion"])
    widget.add_concepts("normal", ["clear lung fields"], enabled=False)
    assert widget.classify() is None
    assert "'normal' has no enabled concepts" in widget.status.text()
