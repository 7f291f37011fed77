"""CoTexNet's network on a tiny real CLIPSeg (random weights): the pseudo-token reaches the text tower only at its
position, text-free prediction never calls the text tower, widths come from the config, the condition and the loss
are the released ones (expected values written out from Rango-bit/CoTexNet, not taken from our code)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from napari_vip.models.vlsm.cotexnet import (  # noqa: E402
    ALPHA_INIT,
    MEAN_INIT,
    TOKEN_POSITION,
    VAR_INIT,
    CoTexNetNet,
    build_heads,
    cotexnet_loss,
    roi_pixels,
)

SIZE = 64


def tiny_arch(hidden=32, layers=2, patch=16, size=SIZE):
    return {
        "extract_layers": list(range(layers)), "reduce_dim": 16, "conditional_layer": 0,
        "use_complex_transposed_convolution": True, "projection_dim": 24,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32,
        "text_config": {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_attention_heads": 2,
                        "num_hidden_layers": layers, "max_position_embeddings": 77, "vocab_size": 49408},
        "vision_config": {"hidden_size": hidden + 8, "intermediate_size": 2 * hidden, "num_attention_heads": 2,
                          "num_hidden_layers": layers, "image_size": size, "patch_size": patch},
    }


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    clipseg = transformers.CLIPSegForImageSegmentation(transformers.CLIPSegConfig(**tiny_arch()))
    return CoTexNetNet(clipseg).freeze_as_released().eval()


def tokens(batch=2, length=77):
    """CLIP-like ids: <sot> 5 words, a keyword, then <eot> padding (eot id 49407 = the config's)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.full((batch, length), 49407, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1:12] = torch.randint(300, 40000, (batch, 11), generator=g)
    mask = torch.zeros((batch, length), dtype=torch.long)
    mask[:, :13] = 1
    return ids, mask


def batch(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.randn((b, 3, SIZE, SIZE), generator=g)
    m = torch.zeros((b, 1, SIZE, SIZE))
    m[:, :, 10:30, 20:44] = 1
    return px, m


def test_widths_come_from_the_config_and_full_size_is_the_released_768_512():
    small = build_heads(transformers.CLIPSegConfig(**tiny_arch()))
    assert [tuple(p.shape) for p in small.mapping_module.parameters()] == [(32, 40), (32,), (32, 32), (32,), (32,), (32,)]
    assert small.img_projection.fc_out.weight.shape == (24, 40)
    from napari_vip.models.vlsm.build import CLIPSEG_REFINED

    full = build_heads(transformers.CLIPSegConfig(**CLIPSEG_REFINED))
    lin1, gelu, lin2, norm = full.mapping_module
    assert (lin1.in_features, lin1.out_features, lin2.out_features, norm.normalized_shape) == (768, 512, 512, (512,))
    assert isinstance(gelu, torch.nn.GELU)
    blocks = [blk[0] for blk in full.img_projection.layers]
    assert [(b.in_features, b.out_features) for b in blocks] == [(768, 768), (768, 768)]
    assert (full.img_projection.fc_out.in_features, full.img_projection.fc_out.out_features) == (768, 512)
    assert full.weight_alpha.item() == pytest.approx(ALPHA_INIT) == pytest.approx(0.2)
    assert full.var.item() == VAR_INIT == 1.0 and full.mean.item() == pytest.approx(MEAN_INIT)


def encoder_inputs(net, ids, mask, token):
    seen = []
    h = net.clipseg.clip.text_model.encoder.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    try:
        emb = net.text_conditional(ids, mask, token)
    finally:
        h.remove()
    return seen[0], emb


def test_pseudo_token_replaces_only_its_position(net):
    ids, mask = tokens()
    px, m = batch()
    roi_a = net.roi_cls(px, m)
    roi_b = net.roi_cls(torch.flip(px, dims=[-1]), m)
    assert not torch.allclose(roi_a, roi_b)
    tok_a, tok_b = net.heads.mapping_module(roi_a), net.heads.mapping_module(roi_b)
    in_plain, emb_plain = encoder_inputs(net, ids, mask, None)
    in_a, emb_a = encoder_inputs(net, ids, mask, tok_a)
    in_b, emb_b = encoder_inputs(net, ids, mask, tok_b)
    changed = (in_a - in_b).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [TOKEN_POSITION] == [5]
    assert torch.equal(in_a[:, TOKEN_POSITION], tok_a.detach())  # it overwrites token + position embedding
    keep = [i for i in range(in_a.shape[1]) if i != TOKEN_POSITION]  # padding after the last token is cut
    assert torch.equal(in_a[:, keep], in_plain[:, keep])
    assert not torch.allclose(emb_a, emb_b)
    # no pseudo-token: the released text embedding, sigmoid of CLIPSeg's own text features
    ref = net.clipseg.clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
    assert torch.allclose(emb_plain, torch.sigmoid(ref))


def test_gradient_reaches_the_pseudo_token_through_the_frozen_text_tower(net):
    ids, mask = tokens()
    px, m = batch()
    feats = net.features(px)
    out = net.cotexnet(feats, ids, mask, net.roi_cls(px, m), use_cls_token=False)
    loss, _, _ = cotexnet_loss(out.logits, m, out.image_embedding, out.text_embedding)
    net.zero_grad()
    loss.backward()
    assert net.heads.mapping_module[0].weight.grad.abs().sum() > 0
    assert net.heads.img_projection.fc_out.weight.grad.abs().sum() > 0
    assert net.heads.weight_alpha.grad is not None and net.heads.var.grad is not None
    assert all(p.grad is None for p in net.clipseg.clip.parameters())
    assert {id(p) for p in net.trainable()} == {id(p) for p in net.parameters() if p.requires_grad}
    net.zero_grad()


def count_text_calls(net):
    calls = []
    h = net.clipseg.clip.text_model.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls, h


def test_text_free_prediction_makes_no_call_to_the_text_tower(net):
    px, m = batch()
    ids, mask = tokens()
    calls, h = count_text_calls(net)
    try:
        with torch.no_grad():
            logits = net.predict_logits(px)
            assert logits.shape == (2, 1, SIZE, SIZE)
            assert len(calls) == 0
            net(pixel_values=px)
            assert len(calls) == 0
            net.cotexnet(net.features(px), ids, mask, use_cls_token=False)  # training reads the sentence
            assert len(calls) == 1
    finally:
        h.remove()


def test_condition_is_the_released_mix_then_scale_and_shift(net):
    px, _ = batch()
    ids, mask = tokens()
    feats = net.features(px)
    captured = []
    h = net.clipseg.decoder.register_forward_pre_hook(lambda mod, args: captured.append(args[1].detach()))
    try:
        with torch.no_grad():
            train = net.cotexnet(feats, ids, mask, use_cls_token=False)
            net.cotexnet(feats, use_cls_token=True)
    finally:
        h.remove()
    a, var, mean = ALPHA_INIT, VAR_INIT, MEAN_INIT
    img = torch.sigmoid(net.heads.img_projection(feats.cls)).detach()
    text = torch.sigmoid(net.clipseg.clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output)
    assert torch.allclose(train.image_embedding, img) and torch.allclose(train.text_embedding, text)
    assert torch.allclose(captured[0], ((1 - a) * text + a * img) * var + mean, atol=1e-6)
    assert torch.allclose(captured[1], img * var + mean, atol=1e-6)
    assert float(img.min()) > 0.5  # the released double sigmoid


def test_roi_is_the_normalised_input_zeroed_outside_the_mask():
    px, m = batch()
    roi = roi_pixels(px, m)
    assert torch.equal(roi[:, :, 10:30, 20:44], px[:, :, 10:30, 20:44])
    assert float(roi[:, :, :10].abs().max()) == 0.0


def test_loss_is_the_released_formula():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 1, 6, 6), generator=g) * 3
    mask = (torch.rand((2, 1, 6, 6), generator=g) > 0.6).float()
    img = torch.rand((2, 5), generator=g)
    text = torch.rand((2, 5), generator=g)
    total, seg, kl = cotexnet_loss(logits, mask, img, text)
    # released: DiceCELoss() (MONAI defaults) on sigmoid outputs; KLDiv(T=1) batchmean; 10 * KL
    p = torch.sigmoid(logits)
    inter = (p * mask).sum(dim=(2, 3))
    dice = (1 - (2 * inter + 1e-5) / (p.sum(dim=(2, 3)) + mask.sum(dim=(2, 3)) + 1e-5)).mean()
    bce = (torch.clamp(p, min=0) - p * mask + torch.log1p(torch.exp(-p.abs()))).mean()  # BCE-with-logits of p
    q = torch.softmax(text, dim=1)
    kl_ref = (q * (torch.log(q) - torch.log_softmax(img, dim=1))).sum() / 2
    assert seg.item() == pytest.approx((dice + bce).item(), rel=1e-5)
    assert kl.item() == pytest.approx(kl_ref.item(), rel=1e-5)
    assert total.item() == pytest.approx((dice + bce + 10.0 * kl_ref).item(), rel=1e-5)
    # the teacher is detached: no gradient reaches the text embedding through the KL term
    t = text.clone().requires_grad_(True)
    s = img.clone().requires_grad_(True)
    cotexnet_loss(logits, mask, s, t)[0].backward()
    assert t.grad is None and s.grad.abs().sum() > 0
