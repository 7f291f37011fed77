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
    from napari_vip.io.autosave import Autosave, image_key, wait_for_saves

    viewer, widget = dock
    vol = np.zeros((4, 48, 64), np.uint16)
    vol[:, 10:30, 20:50] = 900
    viewer.add_image(vol, name="ct")
    viewer.dims.set_current_step(0, 1)
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    req = widget.volume.request()
    assert req.prompts[0].slice_index == 1 and req.prompts[0].box_xyxy == (18.0, 8.0, 52.0, 32.0)
    assert widget.volume.propagate() is not None
    qtbot.waitUntil(lambda: widget.volume.committed is not None, timeout=180_000)
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
    def saved_now():
        wait_for_saves()  # sent on the next event-loop turn, written on the autosave thread
        return Autosave(tmp_path / "autosave").latest(image_key(vol))

    qtbot.waitUntil(lambda: saved_now() is not None, timeout=10_000)
    saved = saved_now()
    np.testing.assert_array_equal(saved.labels, labels)
    assert saved.records[0]["id"] == obj


def test_a_2d_image_is_refused_and_nothing_is_lost(dock):
    viewer, widget = dock
    viewer.add_image(np.zeros((48, 64), np.uint8), name="xray")
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    assert widget.volume.propagate() is None
    assert "3D gray volume" in widget.status.text()
    assert len(viewer.layers[MARKERS_LAYER].data) == 1
    viewer.layers.remove("xray")
    viewer.add_image(np.zeros((48, 64, 3), np.uint8), name="photo", rgb=True)
    assert widget.volume.propagate() is None
    assert "colour picture of shape (48, 64, 3)" in widget.status.text()
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


def _phantom_volume(z=6):
    """``(z, 48, 64)`` uint16: a bright block whose extent changes from slice to slice."""
    vol = np.full((z, 48, 64), 100, np.uint16)
    for k in range(z):
        vol[k, 10:30, 20 + k:50 - k] = 900 + 10 * k
    return vol


@pytest.fixture
def sam2_dock(make_viewer, tiny_sam2_checkpoint, tmp_path, monkeypatch):
    """The dock with the tiny SAM 2 checkpoint chosen (by file, then the test config as architecture)."""
    from napari_vip.widgets.segment import SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAPARI_VIP_AUTOSAVE", str(tmp_path / "autosave"))
    arch, path = tiny_sam2_checkpoint
    viewer = make_viewer()
    widget = SegmentWidget(viewer)
    widget.auto.setChecked(False)
    widget.model.use_checkpoint(path)
    widget.model.arch.setCurrentText(arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


def test_sam2_tracks_within_the_slice_range_and_a_correction_replaces_the_object_where_it_reaches(sam2_dock,
                                                                                                   qtbot):
    """SAM 2 chosen in the dock: the propagation is SAM 2 video tracking (equal to the worker's own run of the
    same request) within the slice range set in the row; "Correct from this slice" re-runs with the key slice's
    prompt and the new one and replaces the same object on the slices the new run reached only; one undo takes
    the correction back."""
    from napari_vip.worker.engine import Engine

    viewer, widget = sam2_dock
    row = widget.volume
    row.stop_empty.setChecked(False)
    vol = _phantom_volume()
    viewer.add_image(vol, name="ct")
    assert (row.first.value(), row.last.value(), row.last.maximum()) == (0, 5, 5)  # the image's slices
    row.first.setValue(1)
    row.last.setValue(3)
    viewer.dims.set_current_step(0, 2)
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[8, 18], [32, 52]]))
    assert row.correct() is None and "Nothing to correct yet" in widget.status.text()
    req = row.request()
    assert req.slice_range == (1, 3) and req.stop_when_empty is False
    row.propagate()
    qtbot.waitUntil(lambda: row.committed is not None, timeout=180_000)
    first = row.last_result
    assert first.provenance.extra["method"] == "sam2-video" and sorted(first.slices) == [1, 2, 3]
    np.testing.assert_array_equal(first.mask, Engine().run(req).mask)
    labels = viewer.layers[ANNOTATIONS_LAYER].data
    (obj,) = set(np.unique(labels)) - {0}
    assert not labels[[0, 4, 5]].any()  # the range holds
    before = labels.copy()

    # a correction on slice 3 (a box there, no candidate shown), now reaching slices 2..5
    widget.clear()
    viewer.dims.set_current_step(0, 3)
    row.first.setValue(2)
    row.last.setValue(5)
    viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[9, 24], [31, 46]]))
    assert row.correct() is not None and f"Correcting object {obj}" in widget.status.text()
    qtbot.waitUntil(lambda: row.committed[1] is not first, timeout=180_000)
    second = row.last_result
    assert [(p.slice_index, p.box_xyxy) for p in second.prompts] == [(2, (18.0, 8.0, 52.0, 32.0)),
                                                                      (3, (24.0, 9.0, 46.0, 31.0))]
    assert sorted(second.slices) == [2, 3, 4, 5]
    labels = viewer.layers[ANNOTATIONS_LAYER].data
    assert set(np.unique(labels)) - {0} <= {obj}  # the same object, no new one
    np.testing.assert_array_equal(labels[2:] == obj, second.mask[2:])
    np.testing.assert_array_equal(labels[:2], before[:2])  # slices the correction did not reach keep the object
    record = viewer.layers[ANNOTATIONS_LAYER].metadata["vip_annotations"][0]
    assert record["id"] == obj and record["source"] == "correction" and len(record["prompts"]["prompts"]) == 2
    assert widget.undo() == obj
    np.testing.assert_array_equal(viewer.layers[ANNOTATIONS_LAYER].data, before)


def test_the_other_slices_are_embedded_in_the_background_so_scrolling_finds_them(make_viewer, qtbot,
                                                                                  tiny_sam_checkpoint, tmp_path,
                                                                                  monkeypatch):
    """With weights from a file, the slice in view's embedding is followed by the other slices' (outward, cached on
    disk, keyed as the dock's own requests): scrolling to another slice finds its embedding ready."""
    from napari_vip.widgets.segment import SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NAPARI_VIP_AUTOSAVE", str(tmp_path / "autosave"))
    arch, path = tiny_sam_checkpoint
    viewer = make_viewer()
    widget = SegmentWidget(viewer)
    try:
        widget.auto.setChecked(False)
        widget.model.use_checkpoint(path)
        widget.model.arch.setCurrentText(arch)
        widget.model.device.setCurrentText("cpu")
        viewer.add_image(_phantom_volume(5), name="ct", contrast_limits=(0, 1000))
        viewer.dims.set_current_step(0, 2)
        widget.precompute()
        qtbot.waitUntil(lambda: widget.volume.last_background is not None, timeout=180_000)
        bg = widget.volume.last_background
        assert bg.order == [2, 3, 1, 4, 0] and bg.sources[2] in ("memory", "disk") and not bg.cancelled
        assert "all 5 slices cached" in widget.embed_status.text()
        widget.last_embed = None
        viewer.dims.set_current_step(0, 4)
        widget.precompute()
        qtbot.waitUntil(lambda: widget.last_embed is not None, timeout=60_000)
        assert widget.last_embed.source in ("memory", "disk")  # not computed again
        assert widget.volume.embed_in_background() is None  # all cached: not sent again for this volume and model
        widget.volume.background.setChecked(False)
        assert widget.volume.embed_in_background() is None
    finally:
        widget.bridge.shutdown()
