"""The segment dock's "Segment as learned": a CoTexNet folder segments the plane in view without a phrase; the
mask is the dock's candidate (commit, undo) and the provenance says cotexnet."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")


def test_segment_as_learned_without_a_phrase(endoscopy_dock, qtbot, tmp_path):
    from vlsm_fixtures import tiny_clipseg_arch, write_arch_json

    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.models.vlsm.cotexnet import CotexnetMethod, save_cotexnet_folder
    from napari_vip.widgets.segment import CURRENT_LAYER

    viewer, widget = endoscopy_dock
    cfg = write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(64, patch=8, complex_conv=False), 64)
    model = CotexnetMethod().prepare(load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg))))
    with __import__("torch").no_grad():  # a bias that makes the untrained decoder's mask non-empty
        model.module.heads.mean.fill_(0.0)
    folder = save_cotexnet_folder(model, tmp_path / "ctx")
    widget.learned.folder.setText(str(tmp_path))  # not a CoTexNet folder: refused with a message
    assert widget.learned.submit() is None and "not a text-free model" in widget.status.text()
    widget.learned.folder.setText(str(folder))
    assert widget.text.text() == ""
    assert widget.learned.submit() is not None
    qtbot.waitUntil(lambda: widget.last_text_result is not None, timeout=120_000)
    res = widget.last_text_result
    want = load_vlsm(VlsmSpec("clipseg", source=str(folder))).predict(viewer.layers["endoscopy"].data)
    assert np.array_equal(viewer.layers[CURRENT_LAYER].data > 0, want.mask)
    assert res.steps[0]["method"] == "cotexnet" and res.text == ""
    assert "cotexnet" in widget.status.text()
    if want.mask.any():
        assert widget.commit() == [1]
        assert widget.store.records[1].source == "text"
        assert widget.undo() == 1


def cotexnet_folder(tmp_path):
    import torch
    from vlsm_fixtures import tiny_clipseg_arch, write_arch_json

    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.models.vlsm.cotexnet import CotexnetMethod, save_cotexnet_folder

    cfg = write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(64, patch=8, complex_conv=False), 64)
    model = CotexnetMethod().prepare(load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg))))
    with torch.no_grad():
        model.module.heads.mean.fill_(0.0)
    return save_cotexnet_folder(model, tmp_path / "ctx")


def test_every_slice_in_the_worker_equals_the_2d_prediction(tmp_path):
    from napari_vip.models.propagation import displayed_slices
    from napari_vip.models.vlsm import VlsmSpec, load_vlsm
    from napari_vip.worker.engine import Engine
    from napari_vip.worker.learned_volume import LearnedVolumeRequest

    folder = cotexnet_folder(tmp_path)
    vol = np.random.default_rng(0).normal(100, 30, (20, 5, 24)).astype(np.float32)  # slices along axis 1
    res = Engine().run(LearnedVolumeRequest(vol, VlsmSpec("clipseg", source=str(folder)), axis=1, slice_range=(1, 3)))
    assert res.mask.shape == vol.shape and res.slices == (1, 3) and len(res.areas) == 3
    assert not res.mask[:, 0].any() and not res.mask[:, 4].any()
    model = load_vlsm(VlsmSpec("clipseg", source=str(folder)))
    rgb = displayed_slices(np.moveaxis(vol, 1, 0)[1:4])
    for k in range(3):
        assert np.array_equal(res.mask[:, k + 1], model.predict(rgb[k]).mask)
    assert res.provenance.to_dict()["method"] == "cotexnet"


def test_every_slice_button_writes_a_labels_layer(make_viewer, qtbot, tiny_sam_arch, tmp_path, monkeypatch):
    from napari_vip.widgets.segment import SegmentWidget
    from napari_vip.widgets.segment_learned import VOLUME_LAYER

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    viewer = make_viewer()
    vol = np.random.default_rng(1).integers(0, 255, (4, 32, 40)).astype(np.uint8)
    viewer.add_image(vol, name="ct")
    widget = SegmentWidget(viewer)
    try:
        widget.model.set_untrained(tiny_sam_arch)
        widget.model.device.setCurrentText("cpu")
        widget.learned.folder.setText(str(cotexnet_folder(tmp_path)))
        assert widget.learned.submit_volume() is not None
        qtbot.waitUntil(lambda: VOLUME_LAYER in viewer.layers, timeout=120_000)
        assert viewer.layers[VOLUME_LAYER].data.shape == vol.shape
        assert "as learned" in widget.status.text()
    finally:
        widget.bridge.shutdown()
