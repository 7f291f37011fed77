"""SAM 2 family: specs, safe loading of official-layout checkpoints, 2D masks equal to SAM2ImagePredictor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_vip.core.errors import VipInputError
from napari_vip.models.sam2_family import Sam2Spec, guess_sam2_arch, load_sam2


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


@pytest.fixture(scope="module")
def loaded(tiny_sam2_checkpoint):
    arch, path = tiny_sam2_checkpoint
    return load_sam2(Sam2Spec(arch, checkpoint=path))


def _reference_predictor(arch, path):
    """sam2's own image predictor on the same file, built through sam2.build_sam (not the project's loader)."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from napari_vip.models.sam2_family import arch_config

    cfg, overrides, size, _ = arch_config(arch)
    net = build_sam2(cfg, path, device="cpu", hydra_overrides_extra=overrides)
    p = SAM2ImagePredictor(net)
    p._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]  # the predictor assumes 1024
    return p


def test_masks_equal_sam2_image_predictor(loaded, tiny_sam2_checkpoint):
    arch, path = tiny_sam2_checkpoint
    ref = _reference_predictor(arch, path)
    rng = np.random.default_rng(0)
    img = (rng.random((90, 110, 3)) * 60).astype(np.uint8)
    img[30:60, 40:80] = 220
    box = np.array([38.0, 28.0, 82.0, 62.0])
    pts, labels = np.array([[60.0, 45.0], [10.0, 10.0]]), np.array([1, 0])
    emb = loaded.embed(img)
    with torch.inference_mode():
        ref.set_image(img)
        for kwargs in ({"boxes_xyxy": [box]}, {"points_xy": pts, "point_labels": labels},
                       {"boxes_xyxy": [box], "points_xy": pts[:1], "point_labels": labels[:1]}):
            out = loaded.decode(emb, multimask=True, **kwargs)
            r_masks, r_scores, r_low = ref.predict(point_coords=kwargs.get("points_xy"),
                                                   point_labels=kwargs.get("point_labels"),
                                                   box=kwargs.get("boxes_xyxy", [None])[0], multimask_output=True)
            assert out.masks.shape == (1, 3, 90, 110) and out.low_res_logits.shape == (1, 3, 32, 32)
            np.testing.assert_allclose(out.scores[0], r_scores, atol=1e-5)
            for m, rm in zip(out.masks[0], r_masks):
                assert _iou(m, rm) >= 0.99
        # refining with the previous low-resolution logits (a mask prompt)
        first = loaded.decode(emb, boxes_xyxy=[box], multimask=False)
        second = loaded.decode(emb, boxes_xyxy=[box], mask_logits=first.low_res_logits[0], multimask=False)
        r1, _, rlow = ref.predict(box=box, multimask_output=False)
        r2, _, _ = ref.predict(box=box, mask_input=rlow, multimask_output=False)
        assert _iou(first.masks[0, 0], r1[0]) >= 0.99 and _iou(second.masks[0, 0], r2[0]) >= 0.99
        # several boxes are one batch, one object each, as the predictor's batched boxes
        boxes = np.array([box, [2.0, 2.0, 30.0, 25.0]])
        out = loaded.decode(emb, boxes_xyxy=boxes, multimask=True)
        r_masks, r_scores, _ = ref.predict(box=boxes, multimask_output=True)
        assert out.masks.shape == (2, 3, 90, 110)
        np.testing.assert_allclose(out.scores, r_scores, atol=1e-5)
        assert min(_iou(a, b) for a, b in zip(out.masks.reshape(-1, 90, 110), r_masks.reshape(-1, 90, 110))) >= 0.99


def test_embedding_array_round_trip(loaded):
    img = np.zeros((70, 50, 3), np.uint8)
    img[20:40, 10:30] = 200
    emb = loaded.embed(img)
    flat = loaded.embedding_array(emb)
    assert flat.dtype == np.float32 and flat.ndim == 1
    back = loaded.embedding_from_array(flat, emb.input_size, emb.original_size)
    assert torch.equal(back.image_embed, emb.image_embed)
    assert all(torch.equal(a, b) for a, b in zip(back.high_res_feats, emb.high_res_feats))
    a = loaded.decode(emb, boxes_xyxy=[[8, 18, 32, 42]])
    b = loaded.decode(back, boxes_xyxy=[[8, 18, 32, 42]])
    assert np.array_equal(a.masks, b.masks)
    with pytest.raises(VipInputError, match="stored SAM 2 embedding has 10 values"):
        loaded.embedding_from_array(np.zeros(10, np.float32), emb.input_size, emb.original_size)


def test_checkpoint_layout_and_errors(tmp_path, tiny_sam2_checkpoint):
    arch, path = tiny_sam2_checkpoint
    state = torch.load(path, weights_only=True)
    assert set(state) == {"model"}
    assert guess_sam2_arch(state["model"]) == "custom"
    # a released name with a checkpoint of another size is named
    with pytest.raises(VipInputError, match="custom size.*sam2.1_hiera_t was chosen"):
        load_sam2(Sam2Spec("sam2.1_hiera_t", checkpoint=path))
    # a SAM 1 file is not a SAM 2 checkpoint
    sam1 = tmp_path / "sam1.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)}, sam1)
    with pytest.raises(VipInputError, match="not a SAM 2 checkpoint"):
        load_sam2(Sam2Spec(arch, checkpoint=str(sam1)))
    # a missing weight in the file
    partial = tmp_path / "partial.pt"
    sd = dict(state["model"])
    sd.pop(next(iter(sd)))
    torch.save({"model": sd}, partial)
    with pytest.raises(VipInputError, match="1 missing"):
        load_sam2(Sam2Spec(arch, checkpoint=str(partial)))
    # a pickle that carries code is refused
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "obj": object()}, evil)
    with pytest.raises(VipInputError, match="refused"):
        load_sam2(Sam2Spec(arch, checkpoint=str(evil)))
    with pytest.raises(VipInputError, match="exactly one source"):
        Sam2Spec(arch)
    with pytest.raises(VipInputError, match="Unknown SAM 2 architecture"):
        Sam2Spec("sam2_hiera_huge", untrained=True)


def test_untrained_and_provenance(loaded, tiny_sam2_arch):
    m = load_sam2(Sam2Spec(tiny_sam2_arch, untrained=True))
    assert m.untrained and m.provenance()["untrained"] is True and m.sha256 is None
    assert loaded.sha256 and len(loaded.sha256) == 64 and loaded.provenance()["untrained"] is False
    assert Sam2Spec("medsam2", untrained=True).medsam2 and not Sam2Spec("sam2.1_hiera_t", untrained=True).medsam2
