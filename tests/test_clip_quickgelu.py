"""CLIP weights trained with QuickGELU (OpenAI's) are built with QuickGELU, as open_clip's pretrained configuration
says and as the released ViP/CLIP code runs them; the activation is named in provenance.

Offline: a tiny real architecture gets pretrained tags in open_clip's registry, and its weights are placed where
open_clip looks for them (the Hugging Face hub cache)."""

from __future__ import annotations

import json

import pytest
import torch


def test_open_clip_tags_say_which_activation_the_weights_need():
    from napari_vip.models.clip import quick_gelu_weights
    from napari_vip.models.spec import ModelSpec

    assert quick_gelu_weights(ModelSpec("ViT-B-16", pretrained="openai"))  # ViT-B-16 itself is GELU
    assert quick_gelu_weights(ModelSpec("ViT-L-14-336", pretrained="openai"))
    assert quick_gelu_weights(ModelSpec("RN50", pretrained="openai"))
    assert quick_gelu_weights(ModelSpec("ViT-B-16-quickgelu", pretrained="openai"))
    assert not quick_gelu_weights(ModelSpec("ViT-B-16", pretrained="laion2b_s34b_b88k"))
    assert not quick_gelu_weights(ModelSpec("ViT-B-16", untrained=True))


@pytest.fixture
def tiny_tags(tmp_path, monkeypatch, tiny_clip_arch):
    """``vip-tiny-vit`` with an ``openai``-like tag (quick_gelu) and a GELU tag, their weights (one seeded random
    state dict) in a hub cache under ``tmp_path``; yields ``(arch, state)``."""
    import huggingface_hub.constants as hf_constants
    from open_clip import pretrained as op

    from napari_vip.models.clip import _create, resolve_arch

    arch = resolve_arch(tiny_clip_arch)  # registers the config under its file stem
    monkeypatch.setitem(op._PRETRAINED, arch, {
        "openai": op._pcfg(hf_hub="napari-vip-test/tiny-openai/", quick_gelu=True),
        "gelu_tag": op._pcfg(hf_hub="napari-vip-test/tiny-gelu/")})
    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(3)
    model, _, _ = _create(arch, "cpu")
    state = model.state_dict()
    for repo in ("tiny-openai", "tiny-gelu"):
        snap = cache / f"models--napari-vip-test--{repo}" / "snapshots" / ("0" * 40)
        snap.mkdir(parents=True)
        torch.save(state, snap / "open_clip_pytorch_model.bin")
        (cache / f"models--napari-vip-test--{repo}" / "refs").mkdir()
        (cache / f"models--napari-vip-test--{repo}" / "refs" / "main").write_text("0" * 40)
    return arch, state


def _activations(model) -> set[str]:
    from open_clip.transformer import QuickGELU

    return {type(m).__name__ for m in model.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))}


def test_a_quick_gelu_tag_builds_quick_gelu(tiny_tags):
    import open_clip

    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec
    from napari_vip.worker.protocol import Provenance

    arch, state = tiny_tags
    quick = load_clip(ModelSpec(arch, pretrained="openai", precision="fp32"), "cpu")
    assert _activations(quick.model) == {"QuickGELU"}  # text and image towers
    assert quick.activation == "quick_gelu" and quick.provenance()["activation"] == "quick_gelu"
    assert Provenance("x", **quick.provenance()).to_dict()["activation"] == "quick_gelu"
    gelu = load_clip(ModelSpec(arch, pretrained="gelu_tag", precision="fp32"), "cpu")
    assert _activations(gelu.model) == {"GELU"} and gelu.provenance()["activation"] == "gelu"
    assert quick.sha256 == gelu.sha256  # the same weights, another activation
    # what the weights were trained with: open_clip's model built with QuickGELU, given the same weights
    ref = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True)
    ref.load_state_dict(state)
    ref.eval()
    tokens = quick.tokenizer(["consolidation in the lower lobe."])
    with torch.no_grad():
        expected = ref.encode_text(tokens)
        assert torch.allclose(quick.model.encode_text(tokens), expected, atol=1e-6)
        assert not torch.allclose(gelu.model.encode_text(tokens), expected, atol=1e-4)


def test_a_checkpoint_beside_its_open_clip_config(tmp_path, tiny_clip_checkpoint):
    from napari_vip.models.clip import load_clip, quick_gelu_weights
    from napari_vip.models.spec import ModelSpec

    arch, ckpt = tiny_clip_checkpoint
    assert not quick_gelu_weights(ModelSpec(arch, checkpoint=ckpt))
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "open_clip_pytorch_model.bin").write_bytes(open(ckpt, "rb").read())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 32, "quick_gelu": True}}))
    spec = ModelSpec(arch, checkpoint=str(folder / "open_clip_pytorch_model.bin"), precision="fp32")
    assert quick_gelu_weights(spec)
    assert load_clip(spec, "cpu").activation == "quick_gelu"
    assert load_clip(ModelSpec(arch, checkpoint=ckpt, precision="fp32"), "cpu").activation == "gelu"
