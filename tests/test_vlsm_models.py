"""VLSM models: CLIPSeg equals transformers' own processor + model pipeline; safe loading from every source."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlsm_fixtures import save_clipseg_folder, tiny_clipseg_arch, write_arch_json

from napari_vip.core.errors import VipInputError
from napari_vip.models.vlsm import ImageActivations, VlsmSpec, load_vlsm


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory):
    return save_clipseg_folder(tmp_path_factory.mktemp("clipseg"))


@pytest.fixture(scope="module")
def clipseg(clipseg_dir):
    return load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir)))


def _image(h=97, w=130, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_clip_tokenizer_from_open_clip_vocab_gives_clip_ids(clipseg):
    """The files written from open_clip's BPE list tokenise as open_clip's own CLIP tokenizer does."""
    import open_clip

    texts = ["one small pink circle polyp, located in right of the image", "a disc", ""]
    ours = clipseg.tokenize(texts)
    ref = open_clip.tokenize(texts, context_length=77)
    for k, text in enumerate(texts):
        n = int(ours["attention_mask"][k].sum())
        assert ours["input_ids"][k, :n].tolist() == ref[k, :n].tolist(), text
    assert ours["input_ids"].shape == (3, 77)
    assert ours["input_ids"][0, 0].item() == 49406 and 49407 in ours["input_ids"][2].tolist()


def test_clipseg_logits_equal_transformers_pipeline(clipseg_dir, clipseg):
    """Same weights, same image: our preprocess + encode/text/decode equals CLIPSegProcessor + the model.

    The processor runs its PIL backend: PIL bilinear resizing, what transformers 4.x (the version medvlsm pins)
    did and what medvlsm's torchvision ``Resize`` on PIL images does; 5.x defaults to a torchvision backend
    whose antialiasing differs by up to ~1/255 per pixel."""
    import torch
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    proc = CLIPSegProcessor.from_pretrained(str(clipseg_dir), backend="pil")
    ref_model = CLIPSegForImageSegmentation.from_pretrained(str(clipseg_dir)).eval()
    images = [_image(97, 130, 0), _image(352, 352, 1)]
    texts = ["one small pink circle polyp", "a square"]
    inputs = proc(text=texts, images=[Image.fromarray(a) for a in images], padding="max_length",
                  max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**inputs).logits
        tok = clipseg.tokenize(texts)
        pix = clipseg.preprocess(images)
        ours = clipseg.forward_logits(pix, tok["input_ids"], tok["attention_mask"])
    assert ours.shape == (2, 1, 352, 352)
    assert torch.equal(tok["input_ids"], inputs["input_ids"])
    assert float((pix - inputs["pixel_values"]).abs().max()) <= 1e-4
    assert float((ours[:, 0] - ref).abs().max()) <= 1e-4
    # one image: (1, 1, S, S), never squeezed
    with torch.no_grad():
        one = clipseg.forward_logits(pix[:1], tok["input_ids"][:1], tok["attention_mask"][:1])
    assert one.shape == (1, 1, 352, 352)


def test_predict_resizes_back_nearest_exact_and_thresholds(clipseg):
    import torch
    import torch.nn.functional as F

    img = _image(97, 130, 3)
    pred = clipseg.predict(img, "a disc")
    assert pred.prob.shape == (97, 130) and pred.mask.shape == (97, 130) and pred.mask.dtype == bool
    assert pred.logits_model.shape == (352, 352)
    prob = torch.sigmoid(torch.as_tensor(pred.logits_model, dtype=torch.float64))
    want = F.interpolate((prob > 0.5).double()[None, None], size=(97, 130), mode="nearest-exact")[0, 0].bool()
    assert np.array_equal(pred.mask, want.numpy())
    assert 0.0 <= pred.prob.min() and pred.prob.max() <= 1.0


def test_activations_round_trip_through_arrays(clipseg):
    import torch

    pix = clipseg.preprocess([_image(40, 50, 4)])
    act = clipseg.encode_image(pix)
    back = ImageActivations.from_arrays(act.to_arrays())
    tok = clipseg.tokenize(["x"])
    cond = clipseg.text_conditional(tok["input_ids"], tok["attention_mask"])
    with torch.no_grad():
        assert torch.equal(clipseg.decode(act, cond), clipseg.decode(back, cond))


def test_sources_safetensors_untrained_and_provenance(clipseg_dir, clipseg, tmp_path):
    import torch

    cfg = write_arch_json(tmp_path / "arch.json", tiny_clipseg_arch(), 352)
    # a bare safetensors file of the same weights, with its architecture config
    m = load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir / "model.safetensors"), config=str(cfg)))
    img = _image(60, 60, 5)
    assert np.array_equal(m.predict(img, "a").logits_model, clipseg.predict(img, "a").logits_model)
    prov = m.provenance()
    assert prov["weights_sha256"] and len(prov["weights_sha256"]) == 64 and prov["untrained"] is False
    assert clipseg.provenance()["weights_sha256"] == prov["weights_sha256"]
    # untrained: seeded real architecture, flagged
    u1 = load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg)))
    u2 = load_vlsm(VlsmSpec("clipseg", untrained=True, config=str(cfg)))
    assert u1.provenance()["untrained"] is True and u1.provenance()["weights_sha256"] is None
    assert u1.weights_id != u2.weights_id
    for a, b in zip(u1.module.state_dict().values(), u2.module.state_dict().values()):
        assert torch.equal(a, b)


def test_wrong_architecture_is_named(clipseg_dir, tmp_path):
    other = write_arch_json(tmp_path / "other.json", tiny_clipseg_arch(hidden=48), 352)
    with pytest.raises(VipInputError, match="another architecture|of another shape"):
        load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir / "model.safetensors"), config=str(other)))
    # a folder whose config says another model type
    bad = tmp_path / "bert"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VipInputError, match="not CLIPSeg"):
        load_vlsm(VlsmSpec("clipseg", source=str(bad)))


def test_pickle_with_code_refused_and_missing_sources(tmp_path):
    import pickle

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(VipInputError, match="safetensors"):
        load_vlsm(VlsmSpec("clipseg", source=str(evil)))
    with pytest.raises(VipInputError, match="does not exist"):
        VlsmSpec("clipseg", source=str(tmp_path / "nope")).family and load_vlsm(
            VlsmSpec("clipseg", source=str(tmp_path / "nope")))
    with pytest.raises(VipInputError, match="no weights"):
        VlsmSpec("clipseg")
    with pytest.raises(VipInputError, match="Unknown VLSM"):
        VlsmSpec("cris", untrained=True)


def test_hub_id_offline_is_a_clear_error_not_random_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VipInputError, match="hub.*--vlsm-checkpoint|--vlsm-checkpoint"):
        load_vlsm(VlsmSpec("clipseg", source="CIDAS/clipseg-rd64-refined-not-cached"))


def test_biomedclipseg_follows_released_forward(tmp_path):
    """BiomedCLIPSeg: block outputs at hidden_states[i + 1] of the list of ViT blocks (as released), the BERT
    tower's projected pooled output as condition, towers frozen, logits (B, 1, S, S)."""
    import torch
    from vlsm_fixtures import tiny_biomedclipseg_config

    cfg = tiny_biomedclipseg_config(tmp_path)
    m = load_vlsm(VlsmSpec("biomedclipseg", untrained=True, config=str(cfg)))
    assert (m.input_size, m.context_length) == (160, 32) and m.provenance()["untrained"]
    net = m.module
    assert not any(p.requires_grad for p in net.biomedclip.parameters())
    assert all(p.requires_grad for p in net.decoder.parameters())
    img = _image(70, 90, 7)
    pix = m.preprocess([img])
    tok = m.tokenize(["one small disc"])
    # the released _forward_vit, written out here from medvlsm's code
    vit = net.biomedclip.visual.trunk
    with torch.no_grad():
        x = vit.norm_pre(vit._pos_embed(vit.patch_embed(pix)))
        blocks = []
        for blk in vit.blocks:
            x = blk(x)
            blocks.append(x)
        pooled = net.biomedclip.visual.head(vit.head(vit.fc_norm(vit.norm(x)[:, 0])))
        acts = [blocks[i + 1] for i in (1, 3)]
        bert = net.biomedclip.text
        out = bert.transformer(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        cond = bert.proj(bert.pooler(out, tok["attention_mask"]))
        want = net.decoder(acts, cond).logits
        got = m.forward_logits(pix, tok["input_ids"], tok["attention_mask"])
        act = m.encode_image(pix)
    assert got.shape == (1, 1, 160, 160)
    assert torch.allclose(got[:, 0], want, atol=1e-6)
    assert torch.allclose(act.pooled, pooled, atol=1e-6)
    assert m.predict(img, "a square").mask.shape == (70, 90)
