"""Attention numerics without a model: rollout, Grad-CAM weighting, normalisation, frames, focus in a box."""

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.focus import box_mask, focus_in_box, shift_box_xyxy
from napari_vip.models.attention import (
    attention_rollout,
    covered_region,
    gradcam_from_tokens,
    grid_to_image,
    normalise_grid,
)


# -- rollout --------------------------------------------------------------------------------------------------
def test_identity_attention_gives_uniform_cls_to_patch_weights():
    eye = np.eye(5)  # class token + 4 patches, every token attends only to itself
    weights = attention_rollout([eye, eye, eye])
    assert weights.shape == (4,)
    assert np.all(weights == weights[0])  # uniform: nothing flows from patches to the class token
    assert weights[0] == 0.0


def test_uniform_attention_spreads_the_class_token_evenly():
    n = 5
    uni = np.full((n, n), 1.0 / n)
    weights = attention_rollout([uni, uni])
    # Â = (U + I)/2 and U @ U = U, so Â Â = I/4 + 3U/4: each patch gets 0.75 / n
    np.testing.assert_allclose(weights, np.full(n - 1, 0.75 / n))


def test_two_layer_rollout_matches_a_hand_computation():
    # 1 class token + 2 patches.  Layer 1: the class token looks half at itself, half at patch 1.
    a1 = np.array([[0.5, 0.5, 0.0],
                   [0.0, 1.0, 0.0],
                   [0.0, 0.0, 1.0]])
    # Layer 2, two heads averaged: head means [[0, 0.5, 0.5], [0, 1, 0], [0, 0, 1]].
    a2_heads = np.array([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
                         [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    # By hand: Â1 = (A1 + I)/rowsum: row0 = [0.75, 0.25, 0]; rows 1, 2 = identity.
    #          Â2 row0 = ([0, .5, .5] + [1, 0, 0]) / 2 = [0.5, 0.25, 0.25]; rows 1, 2 = identity.
    #          (Â2 Â1) row0 = 0.5*[0.75, 0.25, 0] + 0.25*[0, 1, 0] + 0.25*[0, 0, 1] = [0.375, 0.375, 0.25]
    weights = attention_rollout([a1, a2_heads])
    np.testing.assert_allclose(weights, [0.375, 0.25])


def test_rollout_skips_register_tokens():
    n = 6  # class + 1 register + 4 patches
    uni = np.full((n, n), 1.0 / n)
    assert attention_rollout([uni], num_prefix=2).shape == (4,)


# -- Grad-CAM weighting ---------------------------------------------------------------------------------------
def test_gradcam_raises_the_value_of_a_patch_pushed_along_the_gradient():
    rng = np.random.default_rng(1)
    tokens, grads = rng.normal(size=(16, 8)), rng.normal(size=(16, 8))
    cam = gradcam_from_tokens(tokens, grads)
    alpha = grads.mean(axis=0)
    more = tokens.copy()
    more[5] += 0.5 * alpha  # patch 5 contributes more along the class direction
    cam2 = gradcam_from_tokens(more, grads)
    assert cam2[5] > cam[5]
    assert cam2[5] - cam[5] == pytest.approx(0.5 * alpha @ alpha)
    np.testing.assert_array_equal(np.delete(cam2, 5), np.delete(cam, 5))
    less = tokens.copy()
    less[5] -= 0.5 * alpha
    assert gradcam_from_tokens(less, grads)[5] < cam[5]


def test_normalisation_per_method():
    g = np.array([[-2.0, 0.0], [1.0, 4.0]])
    np.testing.assert_allclose(normalise_grid("gradcam", g)[0], [[0, 0], [0.25, 1]])
    np.testing.assert_allclose(normalise_grid("similarity", g)[0], [[0, 1 / 3], [0.5, 1]])
    np.testing.assert_allclose(normalise_grid("rollout", np.array([1.0, 2.0]))[0], [0.5, 1.0])
    flat, note = normalise_grid("gradcam", -np.ones((2, 2)))
    assert not flat.any() and "no patch" in note


# -- frames ---------------------------------------------------------------------------------------------------
def test_grid_upsampling_keeps_patch_positions_and_range():
    grid = np.zeros((4, 4))
    grid[1, 2] = 1.0  # rows 16..31, cols 32..47 of a 64x64 image
    heat = grid_to_image(grid, (64, 64))
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    assert 16 <= r <= 31 and 32 <= c <= 47
    part = grid_to_image(grid, (64, 100), (0, 64, 18, 82))
    assert not part[:, :18].any() and not part[:, 82:].any()


def test_covered_region_of_resize_and_centre_crop():
    from torchvision import transforms as T

    pre = T.Compose([T.Resize(64), T.CenterCrop(64)])
    assert covered_region(pre, (64, 64)) == (0, 64, 0, 64)
    r0, r1, c0, c1 = covered_region(pre, (100, 200))  # resized to 64x128, keeps cols 32..95 -> 50..150
    assert (r0, r1) == (0, 100) and (c0, c1) == (50, 150)
    assert covered_region(T.Compose([T.Resize((64, 64))]), (100, 200)) == (0, 100, 0, 200)


# -- focus ----------------------------------------------------------------------------------------------------
def test_box_mask_takes_pixel_centres_inside_the_box():
    m = box_mask((10, 12), (2, 3, 5, 4))  # x 2..5, y 3..4
    assert m.sum() == 4 * 2
    assert m[3, 2] and m[4, 5] and not m[5, 5] and not m[3, 6]
    assert box_mask((10, 10), (2.5, 2.5, 3.5, 3.5)).sum() == 1  # the box drawn over pixel (3, 3)'s edges


def test_focus_fraction_on_synthetic_maps():
    heat = np.zeros((20, 30))
    heat[5:10, 10:20] = 1.0  # all mass in rows 5..9, cols 10..19
    f = focus_in_box(heat, (10, 5, 19, 9))
    assert f.fraction == pytest.approx(1.0)
    assert f.area_fraction == pytest.approx(50 / 600)
    assert f.enrichment == pytest.approx(12.0)
    half = focus_in_box(heat, (10, 5, 14, 9))  # the left half of the blob
    assert half.fraction == pytest.approx(0.5)
    uniform = focus_in_box(np.ones((20, 30)), (0, 0, 14, 9))
    assert uniform.fraction == pytest.approx(uniform.area_fraction) and uniform.enrichment == pytest.approx(1.0)
    assert focus_in_box(heat, (0, 0, 4, 4)).fraction == 0.0


def test_focus_edge_cases():
    empty = focus_in_box(np.zeros((8, 8)), (1, 1, 3, 3))
    assert empty.fraction is None and empty.area_fraction == pytest.approx(9 / 64)
    with pytest.raises(VipInputError, match="non-negative"):
        focus_in_box(np.full((8, 8), -1.0), (1, 1, 3, 3))
    with pytest.raises(VipInputError, match="covers no pixel"):
        focus_in_box(np.ones((8, 8)), (20, 20, 30, 30))
    assert shift_box_xyxy((10, 20, 30, 40), (5, 7)) == (3, 15, 23, 35)
