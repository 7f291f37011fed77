"""Propagation through a volume: SAM 2 equals SAM2VideoPredictor, SAM 1 slice by slice issues the recipe's
prompts, cancel keeps partial slices, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from napari_vip.core.errors import VipInputError
from napari_vip.models.propagation import SlicePrompt, propagate_sam2
from napari_vip.models.sam import SamSpec, load_sam
from napari_vip.models.sam2_family import Sam2Spec, arch_config, load_sam2
from napari_vip.worker.engine import Engine, ProgressReporter
from napari_vip.worker.volume import PropagateRequest, VolumeEmbedRequest, outward_order


def phantom(z=6, size=64) -> np.ndarray:
    """``(z, size, size)`` float32 CT-like volume: -1000 air, a body disc of 40 + 5k HU on slice k (no two
    slices alike), and a 300 HU ball whose cross-section shrinks away from the middle slice."""
    yy, xx = np.mgrid[:size, :size]
    vol = np.full((z, size, size), -1000.0, np.float32)
    body = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
    vol[:, body] = 40.0
    for k in range(z):
        vol[k][body] += 5.0 * k
        r = 0.25 * size * np.sqrt(max(0.0, 1 - ((k - z / 2) / (z / 2 + 1)) ** 2))
        vol[k][(yy - 0.45 * size) ** 2 + (xx - 0.55 * size) ** 2 < r ** 2] = 300.0
    return vol


def _jpeg_frames(folder, vol) -> np.ndarray:
    """Write ``vol``'s slices as the JPEG folder SAM 2's video predictor reads; returns the frames as its loader
    decodes them ``(Z, H, W, 3)`` uint8, so both sides see the same pixels."""
    u8 = ((np.clip(vol, -200, 400) + 200) / 600 * 255).astype(np.uint8)
    for k, sl in enumerate(u8):
        Image.fromarray(np.repeat(sl[..., None], 3, -1)).save(folder / f"{k:05d}.jpg", quality=95)
    return np.stack([np.asarray(Image.open(folder / f"{k:05d}.jpg").convert("RGB")) for k in range(len(vol))])


def _video_predictor_logits(arch, path, folder, add_prompts) -> dict:
    """``{frame: (H, W) logits}`` of sam2's own SAM2VideoPredictor on the JPEG folder, prompts added by
    ``add_prompts(predictor, state)``, propagated forward then backward."""
    from sam2.build_sam import build_sam2_video_predictor

    cfg, overrides, _, _ = arch_config(arch)
    ref = build_sam2_video_predictor(cfg, path, device="cpu", hydra_overrides_extra=overrides)
    expected = {}
    with torch.inference_mode():
        state = ref.init_state(str(folder))
        add_prompts(ref, state)
        for reverse in (False, True):
            for f, _, logits in ref.propagate_in_video(state, reverse=reverse):
                expected[f] = logits[0, 0].float().numpy()
    return expected


def test_sam2_propagation_equals_video_predictor(tmp_path, tiny_sam2_checkpoint):
    arch, path = tiny_sam2_checkpoint
    frames = _jpeg_frames(tmp_path, phantom(z=5, size=72))
    box = np.array([22.0, 10.0, 60.0, 50.0])
    expected = _video_predictor_logits(arch, path, tmp_path, lambda ref, state: ref.add_new_points_or_box(
        state, frame_idx=2, obj_id=1, box=box))
    assert sorted(expected) == [0, 1, 2, 3, 4]

    model = load_sam2(Sam2Spec(arch, checkpoint=path))
    got = {s.slice_index: s for s in propagate_sam2(model, frames, [SlicePrompt(2, box_xyxy=tuple(box))],
                                                    stop_when_empty=False)}
    assert sorted(got) == [0, 1, 2, 3, 4]
    for k, exp in expected.items():
        np.testing.assert_allclose(got[k].logits, exp, atol=1e-3, rtol=1e-4)
        a, b = got[k].mask, exp > 0
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.99
    assert len({got[k].logits.tobytes() for k in got}) == 5  # every slice its own output

    # a slice range stops both directions at its ends
    ranged = [s.slice_index for s in propagate_sam2(model, frames, [SlicePrompt(2, box_xyxy=tuple(box))],
                                                    slice_range=(1, 3), stop_when_empty=False)]
    assert ranged == [2, 3, 1]


def test_a_sam2_correction_tracks_with_every_prompt_as_the_video_predictor(tmp_path, tiny_sam2_checkpoint):
    """A correction (clicks on another slice) is one more prompt: the result equals SAM2VideoPredictor given the
    key slice's box and the correction's clicks, then propagated."""
    arch, path = tiny_sam2_checkpoint
    frames = _jpeg_frames(tmp_path, phantom(z=5, size=72))
    box = np.array([22.0, 10.0, 60.0, 50.0])
    pts, labels = np.array([[40.0, 30.0], [5.0, 5.0]], np.float32), np.array([1, 0], np.int32)

    def add(ref, state):
        ref.add_new_points_or_box(state, frame_idx=1, obj_id=1, box=box)
        ref.add_new_points_or_box(state, frame_idx=3, obj_id=1, points=pts, labels=labels)

    expected = _video_predictor_logits(arch, path, tmp_path, add)
    model = load_sam2(Sam2Spec(arch, checkpoint=path))
    prompts = [SlicePrompt(1, box_xyxy=tuple(box)), SlicePrompt(3, points_xy=pts, point_labels=labels)]
    got = {s.slice_index: s.logits for s in propagate_sam2(model, frames, prompts, stop_when_empty=False)}
    assert sorted(got) == sorted(expected) == [0, 1, 2, 3, 4]
    for k, exp in expected.items():
        np.testing.assert_allclose(got[k], exp, atol=1e-3, rtol=1e-4)


@pytest.fixture(scope="module")
def sam1(tiny_sam_checkpoint):
    arch, path = tiny_sam_checkpoint
    return SamSpec(arch, checkpoint=path), load_sam(SamSpec(arch, checkpoint=path))


def _bbox(mask):
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())]


def test_sam1_slice_by_slice_issues_previous_mask_box_and_logits(sam1, tmp_path, monkeypatch):
    from napari_vip.models.propagation import displayed_slices

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, model = sam1
    vol = phantom(z=6, size=64)
    key, box = 3, (20.0, 10.0, 55.0, 45.0)
    res = Engine().run(PropagateRequest(vol, [SlicePrompt(key, box_xyxy=box)], spec, iou_threshold=-1e9,
                                        stop_when_empty=True, device="cpu"))
    assert res.slices[0] == key and not res.cancelled
    # the recipe, written here independently: key slice from the box, then each next slice from the previous
    # slice's mask box and its low-resolution logits, one mask per prompt
    rgb = displayed_slices(vol)  # the 2D dock's model input of each slice
    first = model.decode(model.embed(rgb[key]), boxes_xyxy=[box], multimask=False)
    assert np.array_equal(res.mask[key], first.masks[0, 0])
    for step in (1, -1):
        prev, logits, j = first.masks[0, 0], first.low_res_logits[0, :1], key + step
        while 0 <= j < 6 and prev.any():
            out = model.decode(model.embed(rgb[j]), boxes_xyxy=[_bbox(prev)], mask_logits=logits, multimask=False)
            if not out.masks[0, 0].any():
                break
            assert res.issued[j] == {"box_xyxy": _bbox(prev), "mask_logits": True}
            assert np.array_equal(res.mask[j], out.masks[0, 0])
            prev, logits, j = out.masks[0, 0], out.low_res_logits[0, :1], j + step
        assert j not in res.slices  # it stopped exactly where the recipe stops
    assert len(res.slices) >= 2
    # a threshold above any predicted IoU keeps only the key slice
    only = Engine().run(PropagateRequest(vol, [SlicePrompt(key, box_xyxy=box)], spec, iou_threshold=2.0,
                                         device="cpu"))
    assert only.slices == [key] and not only.mask[np.arange(6) != key].any()


def test_a_sam1_correction_starts_at_its_slice_and_stops_before_earlier_prompted_slices(sam1, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, model = sam1
    vol = phantom(z=6, size=64)
    key, fix = SlicePrompt(3, box_xyxy=(20.0, 10.0, 55.0, 45.0)), SlicePrompt(1, box_xyxy=(22.0, 12.0, 52.0, 44.0))
    res = Engine().run(PropagateRequest(vol, [key, fix], spec, iou_threshold=-1e9, stop_when_empty=False,
                                        device="cpu"))
    assert res.slices == [1, 2, 0]  # from the correction: forward up to (not into) slice 3, then backward
    from napari_vip.models.propagation import displayed_slices

    rgb = displayed_slices(vol)
    out = model.decode(model.embed(rgb[1]), boxes_xyxy=[fix.box_xyxy], multimask=False)
    assert np.array_equal(res.mask[1], out.masks[0, 0])  # the correction's own box starts the run
    assert not res.mask[3:].any()


def test_cancel_keeps_partial_slices(sam1, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, _ = sam1
    vol = phantom(z=6, size=64)
    seen = []
    reporter = ProgressReporter(lambda d, t, text: seen.append(text), should_stop=lambda: len(seen) >= 4)
    res = Engine().run(PropagateRequest(vol, [SlicePrompt(3, box_xyxy=(20, 10, 55, 45))], spec,
                                        iou_threshold=-1e9, stop_when_empty=False, device="cpu"), reporter)
    assert res.cancelled and 1 <= len(res.slices) < 6
    assert "cancelled" in " ".join(res.notes)
    reached = np.zeros(6, bool)
    reached[res.slices] = True
    assert not res.mask[~reached].any()  # nothing beyond the slices done
    assert res.to_dict()["cancelled"] is True


def test_axis_in_view(sam1, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, _ = sam1
    vol = phantom(z=6, size=64)
    a = Engine().run(PropagateRequest(vol, [SlicePrompt(3, box_xyxy=(20, 10, 55, 45))], spec, iou_threshold=-1e9,
                                      device="cpu"))
    b = Engine().run(PropagateRequest(np.moveaxis(vol, 0, 2), [SlicePrompt(3, box_xyxy=(20, 10, 55, 45))], spec,
                                      axis=2, iou_threshold=-1e9, device="cpu"))
    assert b.mask.shape == (64, 64, 6) and np.array_equal(np.moveaxis(b.mask, 2, 0), a.mask)


def test_bad_input_is_refused(sam1):
    spec, _ = sam1
    vol = phantom(z=6, size=64)
    eng = Engine()
    with pytest.raises(VipInputError, match="2D"):
        eng.run(PropagateRequest(vol[0], [SlicePrompt(0, box_xyxy=(1, 1, 9, 9))], spec))
    with pytest.raises(VipInputError, match="4D"):
        eng.run(PropagateRequest(vol[None], [SlicePrompt(0, box_xyxy=(1, 1, 9, 9))], spec))
    empty = vol.copy()
    empty[0] = 0.0
    with pytest.raises(VipInputError, match="empty region"):
        eng.run(PropagateRequest(empty, [SlicePrompt(0, box_xyxy=(10, 10, 50, 50))], spec))
    with pytest.raises(VipInputError, match="outside the volume"):
        eng.run(PropagateRequest(vol, [SlicePrompt(9, box_xyxy=(10, 10, 50, 50))], spec))
    with pytest.raises(VipInputError, match="slice range"):
        eng.run(PropagateRequest(vol, [SlicePrompt(1, box_xyxy=(10, 10, 50, 50))], spec, slice_range=(3, 5)))
    with pytest.raises(VipInputError, match="mask on slice 2 is empty"):
        eng.run(PropagateRequest(vol, [SlicePrompt(2, mask=np.zeros((64, 64), bool))], spec))


def test_volume_embeddings_outward_and_cached_per_slice(sam1, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, _ = sam1
    assert outward_order(2, 5) == [2, 3, 1, 4, 0]
    vol = phantom(z=5, size=64)
    first = Engine().run(VolumeEmbedRequest(vol, 2, spec, device="cpu"))
    assert first.order == [2, 3, 1, 4, 0] and set(first.sources.values()) == {"computed"}
    assert len(set(first.keys.values())) == 5
    again = Engine().run(VolumeEmbedRequest(vol, 4, spec, device="cpu"))  # a new worker: from disk
    assert set(again.sources.values()) == {"disk"} and again.keys == first.keys
    # the 2D dock's request for a slice, windowed as displayed, finds the slice embedded in the background
    from napari_vip.core.image import to_model_rgb
    from napari_vip.worker.segment import SegmentEmbedRequest

    window = (-500.0, 400.0)
    Engine().run(VolumeEmbedRequest(vol, 0, spec, window=window, invert=True, device="cpu"))
    plane = to_model_rgb(vol[3], contrast_limits=window, invert=True, rgb=False)
    dock = Engine().run(SegmentEmbedRequest(plane.rgb, spec, window=plane.window, invert=True, device="cpu"))
    assert dock.source == "disk"


def test_a_result_travels_cut_to_its_object_and_arrives_whole(sam1, tmp_path, monkeypatch):
    """What the worker sends the viewer holds the mask's bounding box only, packed to bits (its size is an eighth
    of the object's box, not the volume's); unpickled, the mask is the same full array and ``mask_box`` is
    tight."""
    import pickle

    from napari_vip.core.annotations import bounding_box

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path))
    spec, _ = sam1
    vol = phantom(z=6, size=64)
    res = Engine().run(PropagateRequest(vol, [SlicePrompt(3, box_xyxy=(20.0, 10.0, 55.0, 45.0))], spec,
                                        iou_threshold=-1e9, stop_when_empty=False, device="cpu"))
    assert res.mask.any()
    assert res.box_slices() == bounding_box(res.mask)
    blob = pickle.dumps(res, protocol=5)
    back = pickle.loads(blob)
    assert np.array_equal(back.mask, res.mask) and back.mask.dtype == bool and back.mask_box == res.mask_box
    crop = res.mask[res.box_slices()]
    rest = len(pickle.dumps(dict(res.__dict__, mask=None), protocol=5))
    assert len(blob) - rest <= crop.size / 8 + 200  # the bits of the box, not the volume's bytes
