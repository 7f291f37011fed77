"""The segment dock's "Text → mask" with a VLSM: candidate, heatmap, commit/undo, the prompt ladder."""

from __future__ import annotations

import numpy as np
from vlsm_fixtures import save_clipseg_folder


def test_vlsm_text_to_mask_candidate_commit_undo_and_ladder(endoscopy_dock, qtbot, tmp_path):
    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.widgets.segment import CURRENT_LAYER, HEATMAP_LAYER

    viewer, widget = endoscopy_dock
    folder = save_clipseg_folder(tmp_path / "clipseg", seed=3)
    widget.vlsm.method.setCurrentText("CLIPSeg")
    widget.vlsm.source.setText(str(folder))
    assert widget.vlsm.active() and widget.vlsm.spec() == VlsmSpec("clipseg", source=str(folder))
    widget.text.setText("one small pink polyp")
    assert widget.text_to_mask() is not None
    qtbot.waitUntil(lambda: widget.last_text_result is not None, timeout=120_000)
    res = widget.last_text_result
    assert widget.last_result is res.segment
    want = load_vlsm(VlsmSpec("clipseg", source=str(folder))).predict(viewer.layers["endoscopy"].data,
                                                                     "one small pink polyp")
    assert np.array_equal(viewer.layers[CURRENT_LAYER].data > 0, want.mask)
    assert viewer.layers[HEATMAP_LAYER].data.shape == (48, 64)
    assert "clipseg" in widget.status.text()
    if want.mask.any():
        assert widget.commit() == [1]
        rec = widget.store.records[1]
        assert rec.source == "text" and rec.prompts["text"] == "one small pink polyp"
        assert [s["step"] for s in rec.model["steps"]] == ["vlsm"]
        assert widget.undo() == 1
    # the ladder of a box: p1.. of the region, picked into the phrase box
    from napari_vip.layers import MARKERS_LAYER

    widget.auto.setChecked(False)
    box = np.array([[10, 20], [29, 49]])
    if MARKERS_LAYER in viewer.layers:
        viewer.layers[MARKERS_LAYER].add_rectangles([box])
    else:
        viewer.add_shapes([box], shape_type="rectangle", name=MARKERS_LAYER)
    widget._box_index = 0
    widget.session.clear()
    ladder = widget.vlsm.fill_ladder()
    assert ladder is not None, widget.status.text()
    assert ladder["p1"] == "polyp" and ladder["p3"] == "pink rectangle polyp"
    assert widget.vlsm.ladder.count() >= 6
    widget.vlsm.ladder.setCurrentIndex(2)
    widget.vlsm._use_ladder_entry(2)
    assert widget.text.text() == widget.vlsm.ladder.itemData(2)


def test_similarity_route_is_still_the_default(endoscopy_dock):
    _, widget = endoscopy_dock
    assert not widget.vlsm.active() and not widget.vlsm.refine.isEnabled()
