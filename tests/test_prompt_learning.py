"""ViP context/merge prompts and CoOp on a tiny real open_clip model: token layout, pooling, merge, training, file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_vip.core.errors import VipInputError


def make_two_class_folder(root: Path, n: int = 16, side: int = 40, seed: int = 0) -> Path:
    """``root/dark/*.png`` (values 0..75) and ``root/bright/*.png`` (180..255): a visible difference."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, low in (("dark", 0), ("bright", 180)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(low, low + 76, (side, side)).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


LIBRARY = {"dark": ["a dark image", "black background"], "bright": ["a bright image", "white area", "light"]}


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_checkpoint):
    from napari_vip.models.clip import load_clip
    from napari_vip.models.spec import ModelSpec

    arch, path = tiny_clip_checkpoint
    return load_clip(ModelSpec(arch, checkpoint=path), "cpu")


@pytest.fixture(scope="module")
def tower(tiny_clip):
    from napari_vip.models.prompt_learning import TextTower

    return TextTower(tiny_clip.model, tiny_clip.tokenizer)


def test_context_prompt_token_layout(tiny_clip, tower):
    from napari_vip.models.prompt_learning import ContextPrompt

    texts = ["hazy opacity", "clear lungs with sharp edges"]
    cp = ContextPrompt(tower, texts, [0, 1], n_classes=2, n_ctx=4)
    assert cp.ctx.shape == (4, tower.width)
    ids = cp.ids.cpu()
    for row, text in zip(ids, texts):
        content = tower.content_ids(text + ".")
        assert row[0] == tower.sos_id
        assert (row[1:5] == tower.placeholder_id).all()
        assert row[5:5 + len(content)].tolist() == content  # the descriptor sits right after the context
        assert row[5 + len(content)] == tower.eos_id
    assert cp.eos_pos.tolist() == [5 + len(tower.content_ids(t + ".")) for t in texts]
    emb = cp.embeddings()
    assert emb.shape == (2, ids.shape[1], tower.width)
    assert torch.equal(emb[0, 1:5], cp.ctx.detach())
    assert torch.equal(emb[:, 5:], cp.token_embeds[:, 5:])  # the descriptor tokens are untouched
    specific = ContextPrompt(tower, texts, [0, 1], n_classes=2, n_ctx=4, class_specific=True)
    assert specific.ctx.shape == (2, 4, tower.width)
    assert torch.equal(specific.embeddings()[1, 1:5], specific.ctx[1].detach())


def test_eos_pooling_matches_open_clip(tiny_clip, tower):
    """With the context set to the embeddings of 'a photo of a', the features equal open_clip's encode_text."""
    from napari_vip.models.prompt_learning import ContextPrompt

    texts = ["hazy opacity", "clear lungs with sharp edges"]
    cp = ContextPrompt(tower, texts, [0, 1], n_classes=2, n_ctx=4)
    model, tok = tiny_clip.model, tiny_clip.tokenizer
    words = tok(["a photo of a"])[0, 1:5]
    with torch.no_grad():
        cp.ctx.copy_(model.token_embedding(words))
        ref = model.encode_text(tok([f"a photo of a {t}." for t in texts]))
        ours = cp()
    assert torch.allclose(ours, ref, atol=1e-5)
    # the pooled position is the end token, not the last context vector nor the padding
    assert tower.pool_index(cp.ids).tolist() == cp.eos_pos.tolist()
    with torch.no_grad():
        h = tower._t.ln_final(tower._t.transformer(cp.embeddings() + tower._t.positional_embedding[:cp.ids.shape[1]],
                                                   attn_mask=tower._t.attn_mask[:cp.ids.shape[1], :cp.ids.shape[1]]))
        wrong = h[:, 4] @ tower._t.text_projection
    assert not torch.allclose(wrong, ours, atol=1e-3)


def test_merge_formula_by_hand():
    from napari_vip.models.prompt_learning import merge_descriptors

    rng = np.random.default_rng(3)
    D, K = 3, 2
    q = rng.normal(size=(2, D))
    T = rng.normal(size=(2, K, D))
    mask = np.array([[True, True], [True, False]])  # class 1 has one descriptor
    Wq, Wk = rng.normal(size=(D, D)), rng.normal(size=(D, D))
    expected = []
    for c in range(2):
        k = int(mask[c].sum())
        s = np.array([(Wq @ q[c]) @ (Wk @ T[c, j]) / math.sqrt(D) for j in range(k)])
        a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        expected.append(q[c] + sum(a[j] * T[c, j] for j in range(k)))
    got = merge_descriptors(*(torch.as_tensor(v) for v in (q, T, mask, Wq, Wk)))
    np.testing.assert_allclose(got.numpy(), np.array(expected), rtol=1e-10)
    assert np.allclose(got[1].numpy(), q[1] + T[1, 0])  # one descriptor: all attention on it


@pytest.mark.parametrize("method", ["vip", "coop"])
def test_training_lowers_loss_and_learns(tmp_path, tiny_clip, method):
    from napari_vip.core.datasets import load_labelled
    from napari_vip.core.metrics import classification_metrics
    from napari_vip.models.training import TrainConfig, build_learner, encode_images, train_prompts

    data = load_labelled(make_two_class_folder(tmp_path / "data"))
    idx = np.arange(len(data))
    feats = encode_images(tiny_clip, data, idx)
    cfg = TrainConfig(method=method, epochs=6, batch_size=8, val_fraction=0.0)
    untrained = build_learner(tiny_clip, data.classes, LIBRARY, cfg)
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(untrained(feats), torch.as_tensor(data.labels)).item()
    out = train_prompts(tiny_clip, data, LIBRARY, cfg, idx, progress=None, train_features=feats)
    with torch.no_grad():
        logits = out.learner(feats)
    after = torch.nn.functional.cross_entropy(logits, torch.as_tensor(data.labels)).item()
    assert after < 0.7 * before
    assert out.history[-1].train_loss < out.history[0].train_loss
    acc = classification_metrics(torch.softmax(logits, -1).numpy(), data.labels, data.classes)["accuracy"]
    assert acc >= 0.9
    assert all(not p.requires_grad for p in tiny_clip.model.parameters())  # CLIP stayed frozen


def test_metrics_by_hand():
    from napari_vip.core.metrics import classification_metrics

    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    y = np.array([0, 0, 1, 1, 1])
    m = classification_metrics(p, y, ["a", "b"])
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 2 / 3) / 2)
    # class b scores 0.1, 0.4 (neg) vs 0.7, 0.8, 0.3 (pos): 5 of 6 pairs ordered
    assert m["per_class"]["b"]["auroc"] == pytest.approx(5 / 6)
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 3)


def test_lr_schedule():
    from napari_vip.models.training import TrainConfig

    cfg = TrainConfig(epochs=10)
    assert cfg.lr_at(0) == 1e-5
    assert cfg.lr_at(1) == 0.002  # Dassl: the cosine starts after the warm-up (tests/test_learn_released.py)
    assert cfg.lr_at(2) == pytest.approx(0.5 * 0.002 * (1 + math.cos(math.pi / 10)))
    assert cfg.lr_at(9) < cfg.lr_at(5) < cfg.lr_at(1) <= 0.002


def test_file_round_trip_and_mismatch(tmp_path, tiny_clip, tiny_clip_checkpoint):
    from napari_vip.core.datasets import load_labelled
    from napari_vip.models.clip import load_clip
    from napari_vip.models.learned_prompts import LearnedPrompts
    from napari_vip.models.spec import ModelSpec
    from napari_vip.models.training import TrainConfig, train_prompts

    data = load_labelled(make_two_class_folder(tmp_path / "data", n=6))
    cfg = TrainConfig(method="vip", epochs=2, batch_size=8, val_fraction=0.0, class_specific=True)
    out = train_prompts(tiny_clip, data, LIBRARY, cfg, np.arange(len(data)))
    lp = LearnedPrompts.from_learner(out.learner, tiny_clip, cfg, metrics={"accuracy": 1.0})
    path = lp.save(tmp_path / "p.pt")
    raw = torch.load(path, weights_only=True)  # plain tensors and text only
    assert set(raw) == {"format", "version", "meta", "tensors"}
    back = LearnedPrompts.load(path)
    assert back.classes == data.classes and back.descriptors == {c: LIBRARY[c] for c in data.classes}
    assert back.weights_sha256 == tiny_clip.sha256 and back.model["checkpoint"] == tiny_clip_checkpoint[1]
    assert back.config["class_specific"] is True and back.metrics == {"accuracy": 1.0}
    with torch.no_grad():
        expected = out.learner.class_features()
    assert torch.allclose(back.class_features(tiny_clip), expected, atol=1e-6)
    # another CLIP (other weights of the same architecture) is refused
    torch.manual_seed(1)
    from napari_vip.models.clip import _create

    other, _, _ = _create(tiny_clip_checkpoint[0], "cpu")
    other_path = tmp_path / "other.pt"
    torch.save(other.state_dict(), other_path)
    other_clip = load_clip(ModelSpec(tiny_clip_checkpoint[0], checkpoint=str(other_path)), "cpu")
    with pytest.raises(VipInputError, match="only work with the model they were learned on"):
        back.class_features(other_clip)
    # a file that is not learned prompts
    torch.save({"w": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(VipInputError, match="not a napari-vip learned-prompts file"):
        LearnedPrompts.load(tmp_path / "x.pt")


def test_vip_needs_descriptors(tiny_clip, tower):
    from napari_vip.models.prompt_learning import PromptLearner

    with pytest.raises(VipInputError, match="No descriptors for class"):
        PromptLearner(tower, ["dark", "grey"], LIBRARY, "vip")
    with pytest.raises(VipInputError, match="descriptors"):
        PromptLearner(tower, ["dark", "bright"], None, "vip")
    coop = PromptLearner(tower, ["dark", "bright"], None, "coop")
    assert coop.context.ids.shape[0] == 2


def _separable_features(dim: int, n: int, seed: int):
    """``(2n, dim)`` unit features of two classes that share one dominant direction and differ by a small one,
    as a frozen CLIP with random weights gives them (every image within a few degrees of the same direction)."""
    rng = np.random.default_rng(seed)
    common, delta = np.linalg.qr(rng.normal(size=(dim, 2)))[0].T
    labels = np.repeat([0, 1], n)
    f = common + 0.08 * np.where(labels[:, None] == 0, 1.0, -1.0) * delta + 0.01 * rng.normal(size=(2 * n, dim))
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return torch.as_tensor(f, dtype=torch.float32), labels


@pytest.mark.parametrize("method", ["vip", "coop"])
def test_vip_and_coop_learn_the_same_separable_set(tiny_clip, method):
    """Same frozen features, same schedule: both methods separate the two classes on held-out features."""
    from napari_vip.core.datasets import LabelledImages
    from napari_vip.models.training import TrainConfig, train_prompts

    feats, labels = _separable_features(tiny_clip.model.text_projection.shape[1], 24, seed=3)
    data = LabelledImages(["disc", "none"], [f"{i}.png" for i in range(len(labels))], labels, [None] * len(labels),
                          "synthetic")
    order = np.random.default_rng(0).permutation(len(labels))
    tr, va = order[:38], order[38:]
    descriptors = {"disc": ["a bright round disc", "a white circle", "a bright blob", "a round spot"],
                   "none": ["uniform gray noise", "no bright spot", "plain texture", "an empty field"]}
    out = train_prompts(tiny_clip, data, descriptors, TrainConfig(method=method, epochs=20), tr, va,
                        train_features=feats[tr], val_features=feats[va])
    assert out.history[out.best_epoch - 1].val_accuracy >= 0.8
    assert out.history[-1].val_accuracy >= 0.8  # settled, not a lucky epoch
    assert len(out.history) == 20


def test_small_sets_get_enough_optimiser_steps():
    from napari_vip.models.training import TrainConfig, _epoch_order

    cfg = TrainConfig(epochs=20, batch_size=32)
    assert cfg.steps_per_epoch(38) == 10  # 200 steps in all, not 2 per epoch
    assert cfg.steps_per_epoch(10_000) == 313  # a large set: one pass per epoch, as before
    batches = _epoch_order(np.random.default_rng(0), 38, 10, 32)
    assert len(batches) == 10
    first_pass = np.concatenate(batches[:2])
    assert sorted(first_pass.tolist()) == list(range(38))  # each pass sees every image once


def test_every_learnable_parameter_gets_a_gradient_on_the_first_step(tiny_clip):
    from napari_vip.models.training import TrainConfig, build_learner

    feats, labels = _separable_features(tiny_clip.model.text_projection.shape[1], 8, seed=1)
    for method in ("vip", "coop"):
        learner = build_learner(tiny_clip, ["dark", "bright"], LIBRARY, TrainConfig(method=method))
        loss = torch.nn.functional.cross_entropy(learner(feats), torch.as_tensor(labels))
        loss.backward()
        params = dict(learner.named_parameters())
        assert set(params) == ({"context.ctx", "merge.query", "merge.W_q.weight", "merge.W_k.weight"}
                               if method == "vip" else {"context.ctx"})
        for name, p in params.items():
            assert p.grad is not None and float(p.grad.abs().max()) > 0, (method, name)
            # large enough to move the tensor: identity W_q/W_k on near-identical features got ~1e-6 of their norm
            assert float(p.grad.norm() / p.detach().norm()) > 1e-4, (method, name)
        assert not any(p.requires_grad for p in tiny_clip.model.parameters())
