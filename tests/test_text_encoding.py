"""Trimmed text encoding equals the tower's own ``encode_text`` (open_clip causal towers), and is used."""

import json
from pathlib import Path

import pytest
import torch

from napari_vip.models.clip import _create
from napari_vip.models.text_encoding import causal_tower, encode_text

PROMPTS = ["A chest x-ray with signs of pneumonia indicated by a red circle.", "normal", "a",
           "A chest x-ray with signs of a large left-sided pleural effusion and a small nodule in the right apex, "
           "indicated by a red arrow."] * 5


def tower_model(arch):
    torch.manual_seed(0)
    model, _, tokenizer = _create(arch, "cpu")
    return model, tokenizer


@pytest.fixture
def custom_text_arch(tmp_path, tiny_clip_arch):
    """The tiny config as a ``CustomTextCLIP`` (text tower in ``model.text``, a ``TextTransformer``)."""
    cfg = json.loads(Path(tiny_clip_arch).read_text())
    cfg["custom_text"] = True
    path = tmp_path / "vip-tiny-custom-text.json"
    path.write_text(json.dumps(cfg))
    return str(path)


@pytest.mark.parametrize("which", ["clip", "custom_text"])
def test_trimmed_encoding_equals_encode_text(which, tiny_clip_arch, custom_text_arch):
    model, tokenizer = tower_model(tiny_clip_arch if which == "clip" else custom_text_arch)
    assert (type(model).__name__ == "CustomTextCLIP") == (which == "custom_text")
    assert causal_tower(model) is not None
    tokens = tokenizer(PROMPTS)
    with torch.no_grad():
        want = model.encode_text(tokens)
        got = encode_text(model, tokens)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_trimming_runs_the_tower_on_the_used_tokens_only(tiny_clip_arch):
    model, tokenizer = tower_model(tiny_clip_arch)
    tokens = tokenizer(["a", "normal"])
    seen = []
    hook = model.transformer.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        encode_text(model, tokens)
    hook.remove()
    assert seen == [int(tokens.argmax(-1).max()) + 1] and seen[0] < tokens.shape[1]


def test_towers_that_cannot_be_trimmed_use_their_own_encode_text(tiny_clip_arch):
    model, tokenizer = tower_model(tiny_clip_arch)
    model.attn_mask = None  # a bidirectional tower: later tokens change earlier outputs
    assert causal_tower(model) is None
    tokens = tokenizer(PROMPTS[:3])
    with torch.no_grad():
        torch.testing.assert_close(encode_text(model, tokens), model.encode_text(tokens))


def test_clip_model_encode_texts_uses_the_trimmed_path(tiny_clip_checkpoint):
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    arch, ckpt = tiny_clip_checkpoint
    clip = load_clip(ModelSpec(arch=arch, checkpoint=ckpt), "cpu")
    lengths = []
    hook = clip.model.transformer.register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    feats = clip.encode_texts(PROMPTS[:4])
    hook.remove()
    assert lengths and max(lengths) < 77
    with torch.no_grad():
        want = torch.nn.functional.normalize(clip.model.encode_text(clip.tokenizer(PROMPTS[:4])).float(), dim=-1)
    torch.testing.assert_close(feats, want, atol=1e-5, rtol=0)
