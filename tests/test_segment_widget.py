"""The "VIP segment" dock in a headless viewer: a box, a click, candidates, commit, undo, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.layers import MARKERS_LAYER


@pytest.fixture
def dock(make_viewer, qtbot, tiny_sam_arch, tmp_path, monkeypatch):
    from napari_vip.widgets.segment import SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    viewer = make_viewer()
    img = np.zeros((3, 48, 64), np.uint16)
    img[:, 10:30, 20:50] = 900
    viewer.add_image(img, name="ct", scale=(1.0, 2.0, 2.0))  # world units differ from pixels
    widget = SegmentWidget(viewer)
    widget.model.set_untrained(tiny_sam_arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


def test_box_click_commit_undo_save_load(dock, qtbot, tiny_sam_arch, tmp_path):
    from napari_vip.core.annotations import AnnotationStore
    from napari_vip.models.sam import SamSpec, load_sam
    from napari_vip.widgets.segment import ANNOTATIONS_LAYER, CLICKS_LAYER, CURRENT_LAYER

    viewer, widget = dock
    viewer.dims.set_current_step(0, 1)  # the middle slice
    qtbot.waitUntil(lambda: widget.last_embed is not None, timeout=120_000)
    assert "ready" in widget.embed_status.text()

    markers = viewer.layers[MARKERS_LAYER]
    markers.add_rectangles(np.array([[8, 18], [32, 52]]))  # data (row, col) = image pixels
    qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)
    res = widget.last_result
    assert res.boxes_xyxy == [(18.0, 8.0, 52.0, 32.0)]  # (x0, y0, x1, y1)
    assert res.masks.shape == (1, 3, 48, 64)
    assert widget.last_latency_ms is not None and widget.last_latency_ms > 0

    # the same mask as the model decoding the same prompts in this process (untrained weights are seeded)
    model = load_sam(SamSpec(tiny_sam_arch, untrained=True))
    image, _, _, _ = widget.model_image()
    ref = model.decode(model.embed(image.rgb), [(18.0, 8.0, 52.0, 32.0)], multimask=True)
    best = int(np.argmax(ref.scores[0]))
    np.testing.assert_array_equal(viewer.layers[CURRENT_LAYER].data.astype(bool), ref.masks[0, best])
    assert "UNTRAINED" in widget.status.text()

    widget.next_candidate()
    assert widget.candidate == 1
    np.testing.assert_array_equal(viewer.layers[CURRENT_LAYER].data.astype(bool), res.masks[0, 1])

    clicks = viewer.layers[CLICKS_LAYER]
    widget.positive.setChecked(False)
    clicks.add(np.array([20.0, 40.0]))  # row 20, col 40 -> (x, y) = (40, 20), negative
    qtbot.waitUntil(lambda: widget.last_result is not res, timeout=120_000)
    second = widget.last_result
    assert second.points_xy.tolist() == [[40.0, 20.0]] and second.point_labels.tolist() == [0]
    assert second.boxes_xyxy == [(18.0, 8.0, 52.0, 32.0)]

    shown = viewer.layers[CURRENT_LAYER].data.astype(bool)
    ids = widget.commit()
    assert ids == [1]
    ann = viewer.layers[ANNOTATIONS_LAYER]
    assert ann.data.shape == (3, 48, 64)
    np.testing.assert_array_equal(ann.data[1] == 1, shown)  # on the slice in view only
    assert not ann.data[[0, 2]].any()
    assert len(clicks.data) == 0 and not viewer.layers[CURRENT_LAYER].data.any()
    assert ann.metadata["vip_annotations"][0]["prompts"]["point_labels"] == [0]

    label_path, _ = widget.save_annotations(tmp_path / "ann.tif")
    assert widget.undo() == 1 and not ann.data.any()
    assert widget.load_annotations(label_path) == 1
    ann = viewer.layers[ANNOTATIONS_LAYER]
    np.testing.assert_array_equal(ann.data, AnnotationStore.load(label_path).labels)
    assert "ct" in viewer.layers and MARKERS_LAYER in viewer.layers  # the user's layers are untouched


def test_bad_prompt_is_reported_not_sent(dock, qtbot):
    from napari_vip.widgets.segment import CLICKS_LAYER

    viewer, widget = dock
    widget.positive.setChecked(False)
    viewer.layers[CLICKS_LAYER].add(np.array([5.0, 5.0]))  # only a negative click
    assert "Only negative points" in widget.status.text()
    assert widget.last_result is None


def test_text_to_mask_shows_heatmap_and_candidate(dock, qtbot, tiny_clip_arch):
    from napari_vip.widgets.segment import CURRENT_LAYER, HEATMAP_LAYER

    viewer, widget = dock
    widget.clip_model.set_untrained(tiny_clip_arch)
    widget.text.setText("small bright nodule")
    assert widget.text_to_mask() is not None
    qtbot.waitUntil(lambda: widget.last_text_result is not None, timeout=120_000)
    heat = viewer.layers[HEATMAP_LAYER]
    assert heat.data.shape == (48, 64) and 0.0 <= heat.data.min() and heat.data.max() <= 1.0
    assert viewer.layers[CURRENT_LAYER].data.shape == (48, 64)
    assert widget.last_result is widget.last_text_result.segment
    assert "UNTRAINED CLIP" in widget.status.text()
    assert widget.commit() == [1]
    rec = widget.store.records[1]
    assert rec.source == "text" and rec.prompts["text"] == "small bright nodule"
    assert [s["step"] for s in rec.model["steps"]] == ["similarity", "region", "sam"]


def test_sam2_through_the_dock_equals_sam2_image_predictor(make_viewer, qtbot, tiny_sam2_checkpoint, tmp_path,
                                                            monkeypatch):
    """SAM 2 chosen in the dock: the box's candidates are SAM2ImagePredictor's on the plane's model input, the
    embedding is computed once, and a commit lands in "VIP annotations"."""
    import torch
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_vip.models.sam2_family import arch_config
    from napari_vip.widgets.segment import ANNOTATIONS_LAYER, CURRENT_LAYER, SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    arch, path = tiny_sam2_checkpoint
    viewer = make_viewer()
    img = np.zeros((60, 80), np.uint8)
    img[15:45, 20:60] = 200
    viewer.add_image(img, name="xray")
    widget = SegmentWidget(viewer)
    try:
        widget.model.use_checkpoint(path)
        widget.model.arch.setCurrentText(arch)
        widget.model.device.setCurrentText("cpu")
        widget.precompute()
        qtbot.waitUntil(lambda: widget.last_embed is not None, timeout=120_000)
        viewer.layers[MARKERS_LAYER].add_rectangles(np.array([[12, 18], [48, 62]]))
        qtbot.waitUntil(lambda: widget.last_result is not None, timeout=120_000)
        res = widget.last_result
        assert res.embedding_source == "memory" and res.provenance.to_dict()["model"]["arch"] == arch

        cfg, overrides, size, _ = arch_config(arch)
        ref = SAM2ImagePredictor(build_sam2(cfg, path, device="cpu", hydra_overrides_extra=overrides))
        ref._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]
        image, _, _, _ = widget.model_image()
        with torch.inference_mode():
            ref.set_image(image.rgb)
            masks, scores, _ = ref.predict(box=np.array([18.0, 12.0, 62.0, 48.0]), multimask_output=True)
        best_mask = masks[int(np.argmax(scores))].astype(bool)
        shown = viewer.layers[CURRENT_LAYER].data.astype(bool)
        union = (shown | best_mask).sum()
        assert (shown & best_mask).sum() / union >= 0.99
        np.testing.assert_allclose(res.scores[0], np.sort(scores)[::-1], atol=1e-5)
        assert shown.any()
        assert widget.commit() == [1]
        np.testing.assert_array_equal(viewer.layers[ANNOTATIONS_LAYER].data == 1, shown)
    finally:
        widget.bridge.shutdown()
