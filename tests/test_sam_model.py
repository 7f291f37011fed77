"""SAM/MedSAM model: masks equal segment-anything's SamPredictor, MedSAM's recipe, coordinates, bad checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_vip.core.errors import VipInputError
from napari_vip.models.sam import SamSpec, guess_arch, load_sam


def iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.fixture(scope="module")
def image():
    """Non-square (90, 150, 3) uint8 image with a bright rectangle (rows 20..59, cols 40..99)."""
    rng = np.random.default_rng(1)
    img = (rng.random((90, 150, 3)) * 60).astype(np.uint8)
    img[20:60, 40:100] += 150
    return img


@pytest.fixture(scope="module")
def model_and_predictor(tiny_sam_checkpoint, image):
    from segment_anything import SamPredictor

    arch, path = tiny_sam_checkpoint
    model = load_sam(SamSpec(arch, checkpoint=path))
    predictor = SamPredictor(model.sam)
    predictor.set_image(image)
    return model, model.embed(image), predictor


PROMPTS = [
    dict(box=np.array([30.0, 10.0, 110.0, 70.0])),
    dict(box=np.array([30.0, 10.0, 110.0, 70.0]), point_coords=np.array([[60.0, 40.0], [5.0, 80.0]]),
         point_labels=np.array([1, 0])),
    dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[60.0, 40.0], [120.0, 30.0]]), point_labels=np.array([1, 0])),
]


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("k", range(len(PROMPTS)))
def test_masks_equal_sam_predictor(model_and_predictor, k, multimask):
    model, emb, predictor = model_and_predictor
    p = PROMPTS[k]
    ref, ref_scores, ref_low = predictor.predict(multimask_output=multimask, **p)
    box = p.get("box")
    out = model.decode(emb, None if box is None else [box], p.get("point_coords"), p.get("point_labels"),
                       multimask=multimask)
    assert out.masks.shape == (1, ref.shape[0], 90, 150) and out.masks.dtype == bool
    for c in range(ref.shape[0]):
        assert iou(out.masks[0, c], ref[c]) >= 0.99
        assert 0.05 < ref[c].mean() < 0.95 or k == 0  # a real mask, not trivially empty or full
    np.testing.assert_allclose(out.scores[0], ref_scores, atol=1e-5)
    np.testing.assert_allclose(out.low_res_logits[0], ref_low, atol=1e-4)


def test_refining_with_previous_logits_equals_predictor(model_and_predictor):
    model, emb, predictor = model_and_predictor
    _, _, low = predictor.predict(box=PROMPTS[0]["box"], multimask_output=True)
    pts, labels = np.array([[60.0, 40.0]]), np.array([0])
    ref, _, _ = predictor.predict(point_coords=pts, point_labels=labels, box=PROMPTS[0]["box"],
                                  mask_input=low[:1], multimask_output=False)
    out = model.decode(emb, [PROMPTS[0]["box"]], pts, labels, mask_logits=low[:1], multimask=False)
    assert iou(out.masks[0, 0], ref[0]) >= 0.99
    plain = model.decode(emb, [PROMPTS[0]["box"]], pts, labels, multimask=False)
    assert not np.array_equal(plain.low_res_logits, out.low_res_logits)  # the previous mask was used


def test_several_boxes_decode_as_a_batch_equal_one_by_one(model_and_predictor):
    model, emb, predictor = model_and_predictor
    boxes = np.array([[30.0, 10.0, 110.0, 70.0], [0.0, 0.0, 60.0, 45.0], [90.0, 50.0, 149.0, 89.0]])
    out = model.decode(emb, boxes, multimask=True)
    assert out.masks.shape[:2] == (3, 3)
    for b, box in enumerate(boxes):
        ref, scores, _ = predictor.predict(box=box, multimask_output=True)
        for c in range(3):
            assert iou(out.masks[b, c], ref[c]) >= 0.99
        np.testing.assert_allclose(out.scores[b], scores, atol=1e-5)


def test_medsam_follows_its_own_recipe(tiny_sam_checkpoint, image):
    """MedSAM: 1024-square resize, min-max to [0, 1], box scaled per axis, one mask, sigmoid > 0.5."""
    import torch.nn.functional as F
    from skimage.transform import resize

    arch, path = tiny_sam_checkpoint
    model = load_sam(SamSpec(arch, checkpoint=path, medsam=True))
    sam, s = model.sam, model.image_size
    h, w = image.shape[:2]
    img = resize(image, (s, s), order=3, preserve_range=True, anti_aliasing=True).astype(np.uint8)
    img = (img - img.min()) / np.clip(img.max() - img.min(), 1e-8, None)
    box = np.array([30.0, 10.0, 110.0, 70.0])
    with torch.no_grad():
        feats = sam.image_encoder(torch.tensor(img).float().permute(2, 0, 1)[None])
        box_s = torch.tensor(box / np.array([w, h, w, h]) * s, dtype=torch.float)[None, None]
        sparse, dense = sam.prompt_encoder(points=None, boxes=box_s, masks=None)
        low, _ = sam.mask_decoder(image_embeddings=feats, image_pe=sam.prompt_encoder.get_dense_pe(),
                                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                  multimask_output=False)
        ref = (F.interpolate(torch.sigmoid(low), (h, w), mode="bilinear", align_corners=False) > 0.5)[0, 0].numpy()
    emb = model.embed(image)
    assert torch.allclose(emb.features, feats, atol=1e-5)
    out = model.decode(emb, [box], multimask=True)  # MedSAM always gives one mask
    assert out.masks.shape == (1, 1, h, w)
    assert iou(out.masks[0, 0], ref) >= 0.99
    sam_out = load_sam(SamSpec(arch, checkpoint=path)).embed(image)
    assert not torch.allclose(sam_out.features, feats, atol=1e-3)  # SAM's normalisation differs


def test_coordinates_scale_like_segment_anything(tiny_sam_checkpoint):
    from segment_anything.utils.transforms import ResizeLongestSide

    arch, path = tiny_sam_checkpoint
    model = load_sam(SamSpec(arch, checkpoint=path))
    pts = np.array([[0.0, 0.0], [149.0, 89.0], [37.5, 12.25]])
    np.testing.assert_allclose(model.to_input_xy(pts, (90, 150)),
                               ResizeLongestSide(model.image_size).apply_coords(pts, (90, 150)))
    # x follows the width and y the height: a point at the right edge of a wide image lands at the right edge
    assert model.to_input_xy(np.array([[150.0, 0.0]]), (90, 150))[0, 0] == pytest.approx(128.0)
    med = load_sam(SamSpec(arch, checkpoint=path, medsam=True))
    np.testing.assert_allclose(med.to_input_xy(np.array([[150.0, 90.0]]), (90, 150)), [[128.0, 128.0]])


def test_untrained_is_flagged_and_reproducible(tiny_sam_arch, image):
    a = load_sam(SamSpec(tiny_sam_arch, untrained=True))
    b = load_sam(SamSpec(tiny_sam_arch, untrained=True))
    assert a.provenance()["untrained"] is True and a.sha256 is None
    assert a.weights_id != b.weights_id  # never share cached embeddings between random models
    assert torch.allclose(a.embed(image).features, b.embed(image).features)


def test_spec_needs_one_source_of_weights():
    with pytest.raises(VipInputError, match="exactly one source"):
        SamSpec("vit_b")
    with pytest.raises(VipInputError, match="Unknown SAM architecture"):
        SamSpec("vit_x", untrained=True)
    with pytest.raises(VipInputError, match="MedSAM checkpoints are vit_b"):
        SamSpec("vit_h", untrained=True, medsam=True)


def _fake_state(dim: int, depth: int) -> dict:
    state = {"image_encoder.patch_embed.proj.weight": torch.zeros(dim, 3, 1, 1)}
    for i in range(depth):
        state[f"image_encoder.blocks.{i}.norm1.weight"] = torch.zeros(1)
    return state


def test_wrong_architecture_checkpoint_is_named(tmp_path):
    path = tmp_path / "sam_vit_l.pth"
    torch.save(_fake_state(1024, 24), path)
    assert guess_arch(_fake_state(1280, 32)) == "vit_h"
    with pytest.raises(VipInputError, match=r"is a SAM vit_l checkpoint, but architecture vit_b was chosen"):
        load_sam(SamSpec("vit_b", checkpoint=str(path)))
    clip = tmp_path / "clip.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2)}, clip)
    with pytest.raises(VipInputError, match="not a SAM/MedSAM checkpoint"):
        load_sam(SamSpec("vit_b", checkpoint=str(clip)))


def test_custom_checkpoint_of_other_size_does_not_load(tiny_sam_checkpoint, tmp_path):
    _, path = tiny_sam_checkpoint
    with pytest.raises(VipInputError, match="custom size"):
        load_sam(SamSpec("vit_b", checkpoint=path))


def test_cached_image_side_equals_segment_anythings_transformer(tiny_sam_checkpoint):
    """The decoder's first-block image projections, computed once per image, change nothing."""
    import torch

    from napari_vip.models.sam import SamSpec, load_sam
    from napari_vip.models.sam_decoder import image_side, two_way_transformer

    arch, path = tiny_sam_checkpoint
    sam = load_sam(SamSpec(arch, checkpoint=path), "cpu")
    tr = sam.sam.mask_decoder.transformer
    torch.manual_seed(0)
    c = tr.embedding_dim
    src, pe = torch.randn(1, c, 8, 8), torch.randn(1, c, 8, 8)
    tokens = torch.randn(3, 7, c)  # three prompts at once
    with torch.inference_mode():
        want_q, want_k = tr(src.expand(3, -1, -1, -1), pe.expand(3, -1, -1, -1), tokens)
        got_q, got_k = two_way_transformer(tr, image_side(tr, src, pe), tokens)
    torch.testing.assert_close(got_q, want_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_k, want_k, rtol=1e-5, atol=1e-5)
