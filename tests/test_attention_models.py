"""Attention maps on small untrained CLIPs of the three tower kinds: open_clip ViT, timm ViT, ResNet."""

import json

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.models import attention as att

PROMPT = "A chest x-ray with signs of pneumonia."


def _load(arch, seed=0):
    import torch

    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    torch.manual_seed(seed)
    return load_clip(ModelSpec(arch, untrained=True), "cpu")


@pytest.fixture(scope="module")
def clips(tiny_clip_arch, tmp_path_factory):
    """Untrained tiny CLIPs: ``vit`` (open_clip), ``timm`` (timm test_vit trunk, like BiomedCLIP), ``resnet``."""
    from pathlib import Path

    rn = tmp_path_factory.mktemp("cfg") / "vip-tiny-rn-attention.json"
    rn.write_text(json.dumps({"embed_dim": 32,
                              "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 64},
                              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                                           "layers": 1}}))
    timm_arch = str(Path(tiny_clip_arch).parent / "vip-tiny-timm.json")
    return {"vit": _load(tiny_clip_arch), "timm": _load(timm_arch), "resnet": _load(str(rn))}


@pytest.fixture
def image():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)
    img[20:40, 30:60] = 255
    return img


def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_tower_kinds(clips):
    assert [att.tower_kind(clips[k].model) for k in ("vit", "timm", "resnet")] == ["vit", "timm-vit", "resnet"]


@pytest.mark.parametrize("kind", ["vit", "timm"])
@pytest.mark.parametrize("method", att.METHODS)
def test_both_vit_kinds_give_maps_in_the_image_frame(clips, image, kind, method):
    clip = clips[kind]
    res = att.compute_map(clip, image, method, PROMPT)
    gh, gw = (4, 4) if kind == "vit" else (10, 10)
    assert res.grid.shape == (gh, gw) and res.grid.dtype == np.float32
    assert res.heatmap.shape == (72, 96) and res.heatmap.dtype == np.float32
    assert 0.0 <= res.heatmap.min() and res.heatmap.max() <= 1.0 and res.heatmap.max() > 0.5
    r0, r1, c0, c1 = res.covered_rc  # centre crop of a landscape image: all rows, the middle 72 columns
    assert (r0, r1) == (0, 72) and abs((c1 - c0) - 72) <= 1 and abs(c0 - 12) <= 1
    assert not res.heatmap[:, :c0].any() and not res.heatmap[:, c1:].any()
    assert -1.0 <= res.score <= 1.0
    if method == "rollout":
        assert (res.grid >= 0).all()


@pytest.mark.parametrize("kind,method", [("vit", "rollout"), ("vit", "gradcam"), ("vit", "similarity"),
                                         ("timm", "rollout"), ("timm", "gradcam"), ("timm", "similarity"),
                                         ("resnet", "gradcam")])
def test_a_map_leaves_the_model_bit_identical(clips, image, kind, method):
    import torch

    clip = clips[kind]
    model = clip.model
    x = clip.image_batch([image])
    frozen = next(model.visual.parameters())
    frozen.requires_grad_(False)  # a flag the user set must survive
    model.visual.train()  # so must a training flag (no dropout in these configs)
    try:
        with torch.no_grad():
            before = model.encode_image(x).clone()
        flags = [p.requires_grad for p in model.parameters()]
        modes = [m.training for m in model.modules()]
        hooks = _hook_count(model)
        att.compute_map(clip, image, method, PROMPT)
        assert _hook_count(model) == hooks == 0
        assert [p.requires_grad for p in model.parameters()] == flags
        assert [m.training for m in model.modules()] == modes
        assert all(p.grad is None for p in model.parameters())
        with torch.no_grad():
            after = model.encode_image(x)
        assert torch.equal(before, after)
    finally:
        frozen.requires_grad_(True)
        model.eval()


def test_hooks_are_removed_when_the_forward_pass_fails(clips, image):
    clip = clips["vit"]

    def boom(module, args, output):
        raise RuntimeError("boom")

    handle = clip.model.visual.transformer.resblocks[-1].register_forward_hook(boom)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            att.compute_map(clip, image, "rollout")
        assert _hook_count(clip.model) == 1  # only the test's own hook
        assert all(p.requires_grad for p in clip.model.parameters())
    finally:
        handle.remove()


def test_captured_attention_equals_the_modules_own_weights(clips):
    import copy

    import torch

    # open_clip: nn.MultiheadAttention asked for its (head-averaged) weights
    mha = clips["vit"].model.visual.transformer.resblocks[0].attn
    x = torch.randn(1, 17, mha.embed_dim)
    with torch.no_grad():
        ref = mha(x, x, x, need_weights=True, average_attn_weights=True)[1][0]
        got = att._attention_probs(mha, (x, x, x))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # timm: the non-fused path's softmax output, read at its attention dropout
    timm_attn = copy.deepcopy(clips["timm"].model.visual.trunk.blocks[0].attn)
    timm_attn.fused_attn = False
    seen = {}
    timm_attn.attn_drop.register_forward_hook(lambda m, a, o: seen.setdefault("p", o))
    x = torch.randn(1, 101, timm_attn.qkv.in_features)
    with torch.no_grad():
        timm_attn(x)
        got = att._attention_probs(timm_attn, (x,))
    torch.testing.assert_close(got, seen["p"][0].mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["vit", "timm"])
def test_gradcam_sign_raising_a_patch_raises_its_value(clips, image, kind):
    """Doubling a patch's last-block tokens (a patch that supports the class) raises its Grad-CAM value;
    doubling one that opposes it lowers it."""
    clip = clips[kind]
    visual = clip.model.visual
    norm = att._block_norm(att._blocks(visual, att.tower_kind(clip.model))[-1])
    prefix = att._num_prefix(visual, att.tower_kind(clip.model))
    square = image[:, 12:84].copy()  # square: the grid covers the whole image
    g0 = att.compute_map(clip, square, "gradcam", PROMPT).grid.ravel()
    for patch, direction in ((int(np.argmax(g0)), 1), (int(np.argmin(g0)), -1)):
        assert np.sign(g0[patch]) == direction

        def louder(module, args, output, p=patch):
            out = output.clone()
            out[:, prefix + p] *= 2.0
            return out

        handle = norm.register_forward_hook(louder)
        try:
            g1 = att.compute_map(clip, square, "gradcam", PROMPT).grid.ravel()
        finally:
            handle.remove()
        assert (g1[patch] - g0[patch]) * direction > 0.3 * abs(g0[patch])


def test_patch_text_similarity_contract(clips, image):
    import torch

    clip = clips["vit"]
    heat, grid = att.patch_text_similarity(clip, image, "pneumonia")
    assert heat.shape == (72, 96) and heat.dtype == np.float32 and 0 <= heat.min() and heat.max() <= 1
    assert grid.shape == (4, 4) and grid.dtype == np.float32
    assert np.all(np.abs(grid) <= 1.0 + 1e-6)
    # raw cosines: the patch embeddings (final norm + projection) against the text embedding
    visual = clip.model.visual
    with torch.no_grad():
        out = visual.forward_intermediates(clip.image_batch([image]), indices=1, normalize_intermediates=True,
                                           output_fmt="NLC")
        tokens = torch.nn.functional.normalize(out["image_intermediates"][-1][0] @ visual.proj, dim=-1)
        ref = (tokens @ clip.encode_texts(["pneumonia"])[0]).reshape(4, 4).numpy()
    np.testing.assert_allclose(grid, ref, atol=1e-5)
    _, other = att.patch_text_similarity(clip, image, "a normal heart")
    assert not np.allclose(grid, other)


def test_resnet_gets_gradcam_on_layer4_and_refuses_the_rest(clips, image):
    clip = clips["resnet"]
    res = att.compute_map(clip, image, "gradcam", PROMPT)
    assert res.grid.shape == (2, 2) and res.heatmap.shape == (72, 96)
    for method in ("rollout", "similarity"):
        with pytest.raises(VipInputError, match=f"'{method}' is not supported for a ResNet"):
            att.compute_map(clip, image, method, PROMPT)
    with pytest.raises(VipInputError, match="'similarity' is not supported"):
        att.patch_text_similarity(clip, image, "pneumonia")


def test_bad_requests_are_refused(clips, image):
    clip = clips["vit"]
    with pytest.raises(VipInputError, match="Unknown attention method 'saliency'"):
        att.compute_map(clip, image, "saliency", PROMPT)
    with pytest.raises(VipInputError, match="needs a text"):
        att.compute_map(clip, image, "gradcam", "  ")
    with pytest.raises(VipInputError, match="uint8"):
        att.compute_map(clip, image.astype(np.float32), "rollout")
