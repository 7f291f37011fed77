"""The segment dock's volume row: a box on one slice propagated through the stack, committed as one object of
the 3D annotations, autosaved; a 2D image is refused with a message and nothing is lost."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.layers import ANNOTATIONS_LAYER, MARKERS_LAYER


@pytest.fixture
def dock(make_viewer, qtbot, tiny_sam_arch, tmp_path, monkeypatch):
    from napari_vip.widgets.segment import SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAPARI_VIP_AUTOSAVE", str(tmp_path / "autosave"))
    viewer = make_viewer()
    widget = SegmentWidget(viewer)
    widget.auto.setChecked(False)
    widget.model.set_untrained(tiny_sam_arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


def test_propagation_commits_one_object_and_autosaves(dock, qtbot, tmp_path):
    from napari_vip.io.autosave import Autosave, image_key

    viewer, widget = dock
    vol = np.zeros((4, 48, 64), np.uint16)
    vol[:, 10:30, 20:50] = 900
    viewer.add_image(vol, name="ct")
    viewer.dims.set_current_step(0, 1)
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    req = widget.volume.request()
    assert req.prompts[0].slice_index == 1 and req.prompts[0].box_xyxy == (18.0, 8.0, 52.0, 32.0)
    assert widget.volume.propagate() is not None
    qtbot.waitUntil(lambda: widget.volume.last_result is not None, timeout=180_000)
    result = widget.volume.last_result
    labels = viewer.layers[ANNOTATIONS_LAYER].data
    assert labels.shape == (4, 48, 64)
    ids = set(np.unique(labels)) - {0}
    assert len(ids) == 1  # one object id for the whole propagated mask
    (obj,) = ids
    np.testing.assert_array_equal(labels == obj, result.mask)
    assert 1 in result.slices and labels[1].any()
    record = viewer.layers[ANNOTATIONS_LAYER].metadata["vip_annotations"][0]
    assert record["source"] == "propagation" and record["prompts"]["prompts"][0]["slice"] == 1
    saved = Autosave(tmp_path / "autosave").latest(image_key(vol))
    np.testing.assert_array_equal(saved.labels, labels)
    assert saved.records[0]["id"] == obj


def test_a_2d_image_is_refused_and_nothing_is_lost(dock):
    viewer, widget = dock
    viewer.add_image(np.zeros((48, 64), np.uint8), name="xray")
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    assert widget.volume.propagate() is None
    assert "3D gray volume" in widget.status.text()
    assert len(viewer.layers[MARKERS_LAYER].data) == 1


def test_reopening_an_image_offers_its_autosave_and_restores_it(dock, tmp_path):
    from napari_vip.io.autosave import Autosave, image_key

    viewer, widget = dock
    vol = np.zeros((3, 20, 24), np.int16)
    vol[1, 5:9, 6:12] = 300
    labels = np.zeros(vol.shape, np.int32)
    labels[1, 5:9, 6:12] = 4
    record = {"id": 4, "plane": [1], "prompts": {"boxes_xyxy": [[6, 5, 11, 8]]}, "source": "sam", "area": 24}
    Autosave(tmp_path / "autosave").save(image_key(vol), labels, [record])  # left by a crashed session
    viewer.add_image(vol, name="ct")
    assert not widget.volume.restore_btn.isHidden() and "1 object(s)" in widget.volume.restore_btn.toolTip()
    assert widget.volume.restore() == 1
    np.testing.assert_array_equal(viewer.layers[ANNOTATIONS_LAYER].data, labels)
    assert widget.store.records[4].prompts["boxes_xyxy"] == [[6, 5, 11, 8]] and widget.store.next_id() == 5
    assert widget.volume.restore_btn.isHidden()
    viewer.add_image(np.ones((20, 24), np.uint8), name="other")  # another image: nothing to offer
    assert widget.volume.offer_restore(viewer.layers["other"]) is False
