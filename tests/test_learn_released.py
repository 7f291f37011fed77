"""ViP as its released code (xiaofang007/ViP, trainers/ViP.py; Dassl's scheduler): the merge prompt on raw
descriptor features, the ``released`` preset's recipe, and prompt text as the released code builds it.

Every expected value is computed here from the released formulas, written out, never from napari-vip's output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_vip.core.errors import VipInputError

DESCRIPTORS = {"normal lung": ["Normal Shape and size", "Sharp and clear lung borders", "Presence of lung markings"],
               "pneumonia": ["Presence of pleural effusion", "Presence of cavitation", "Presence of consolidation",
                             "Air bronchogram sign"]}


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_checkpoint):
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    arch, path = tiny_clip_checkpoint
    return load_clip(ModelSpec(arch, checkpoint=path, precision="fp32"), "cpu")


def _released_logits(model, tokenizer, classes, descriptors, query, W_q, W_k, image_features, logit_scale):
    """trainers/ViP.py ``CustomCLIP.forward`` with the context set to the embeddings of "a photo of a", written out.

    The released ``TextEncoder`` on ``[SOS] ctx <descriptor>. [EOS]`` then equals CLIP's own ``encode_text`` of
    ``"a photo of a <descriptor>."``; ``MergePrompt.forward(query, key=v, value=v)``:
    ``q = q_proj(query); k = k_proj(v); attn = softmax(q @ k^T * dim**-0.5); out = query + attn @ v``;
    then ``out / |out|`` and ``logit_scale * image_features @ out^T`` per class.
    """
    image_features = image_features.double()
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    cols = []
    for i, c in enumerate(classes):
        with torch.no_grad():
            v = model.encode_text(tokenizer([f"a photo of a {d}." for d in descriptors[c]])).double()
        qi = query[i:i + 1].double()
        q = qi @ W_q.double().T  # nn.Linear(dim, dim, bias=False): x @ W^T
        k = v @ W_k.double().T
        attn = torch.softmax((q @ k.T) * v.shape[-1] ** -0.5, dim=-1)
        out = qi + attn @ v
        out = out / out.norm(dim=-1, keepdim=True)
        cols.append(logit_scale * image_features @ out.T)
    return torch.cat(cols, dim=1)


def _learner_with_fixed_tensors(tiny_clip, **kwargs):
    from napari_vip.models.prompt_learning import PromptLearner, TextTower

    tower = TextTower(tiny_clip.model, tiny_clip.tokenizer)
    classes = sorted(DESCRIPTORS)
    learner = PromptLearner(tower, classes, DESCRIPTORS, "vip", logit_scale=tiny_clip.logit_scale(), **kwargs)
    g = torch.Generator().manual_seed(7)
    D = learner.merge.query.shape[1]
    with torch.no_grad():
        learner.context.ctx.copy_(tiny_clip.model.token_embedding(tiny_clip.tokenizer(["a photo of a"])[0, 1:5]))
        learner.merge.query.copy_(torch.randn(len(classes), D, generator=g))
        learner.merge.W_q.weight.copy_(torch.randn(D, D, generator=g) / math.sqrt(D))
        learner.merge.W_k.weight.copy_(torch.randn(D, D, generator=g) / math.sqrt(D))
    images = torch.nn.functional.normalize(torch.randn(6, D, generator=g), dim=-1)
    return learner, classes, images


def test_merge_prompt_logits_equal_the_released_formula(tiny_clip):
    learner, classes, images = _learner_with_fixed_tensors(tiny_clip)
    m = learner.merge
    expected = _released_logits(tiny_clip.model, tiny_clip.tokenizer, classes, DESCRIPTORS, m.query.detach(),
                                m.W_q.weight.detach(), m.W_k.weight.detach(), images, tiny_clip.logit_scale())
    with torch.no_grad():
        got = learner(images)
    assert got.shape == (6, 2)
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), atol=1e-5, rtol=0)
    # the keys and values are the raw projected features: normalising them (the old form) is another model
    raw_norms = learner.descriptor_features()[0].norm(dim=-1)[learner.descriptor_features()[1]]
    assert not torch.allclose(raw_norms, torch.ones_like(raw_norms), atol=0.05)
    unit, _, _ = _learner_with_fixed_tensors(tiny_clip, merge_on="unit")
    with torch.no_grad():
        assert float((unit(images).double() - expected).abs().max()) > 1e-3


def test_merge_prompt_gradients_equal_the_released_formula(tiny_clip):
    """Cross-entropy gradients of the query and W_k through the released formula (the issue's factor-87 gap)."""
    learner, classes, images = _learner_with_fixed_tensors(tiny_clip)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    m = learner.merge
    refs = [m.query.detach().clone().double().requires_grad_(True), m.W_q.weight.detach().clone().double(),
            m.W_k.weight.detach().clone().double().requires_grad_(True)]
    expected = _released_logits(tiny_clip.model, tiny_clip.tokenizer, classes, DESCRIPTORS, *refs, images,
                                tiny_clip.logit_scale())
    torch.nn.functional.cross_entropy(expected, labels).backward()
    torch.nn.functional.cross_entropy(learner(images), labels).backward()
    np.testing.assert_allclose(m.query.grad.numpy(), refs[0].grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(m.W_k.weight.grad.numpy(), refs[2].grad.numpy(), atol=1e-5)


def test_prompt_text_as_released(tiny_clip):
    from napari_vip.models.prompt_learning import ContextPrompt, TextTower, descriptor_text

    # released: prompt_prefix + " " + item + "." -- a full stop always, nothing else rewritten
    assert descriptor_text("Air bronchogram sign", "released") == "Air bronchogram sign."
    assert descriptor_text("ends with a stop.", "released") == "ends with a stop.."
    assert descriptor_text("ground_glass", "released") == "ground_glass."
    assert descriptor_text("ends with a stop.") == "ends with a stop."  # the project's form
    tower = TextTower(tiny_clip.model, tiny_clip.tokenizer)
    assert len(tower.content_ids("lung")) == 1 and len(tower.content_ids("lung lung.")) == 3
    long = " ".join(["lung"] * 71)  # 71 + 1 (stop) content tokens: 1 + 4 + 72 + 1 > 77
    with pytest.raises(VipInputError, match="longer than the text model's 77 tokens"):
        ContextPrompt(tower, [long], [0], 1, text_form="released")
    cut = ContextPrompt(tower, [long], [0], 1)  # the project's form cuts it, as open_clip's tokenizer does
    assert int(cut.eos_pos[0]) == 76
    fits = " ".join(["lung"] * 70)  # 1 + 4 + 71 + 1 = 77 tokens: accepted
    assert int(ContextPrompt(tower, [fits], [0], 1, text_form="released").eos_pos[0]) == 76


def test_old_prompt_files_keep_their_unit_merge():
    from napari_vip.models.prompt_learning import learner_options
    from napari_vip.models.training import TrainConfig

    assert learner_options({"n_ctx": 4})["merge_on"] == "unit"  # saved before the released merge
    assert learner_options(TrainConfig().to_dict())["merge_on"] == "raw"
