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


# -- the released recipe ----------------------------------------------------------------------------------------
class _DasslConstantWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Dassl's ``ConstantWarmupScheduler`` (dassl/optim/lr_scheduler.py), written out."""

    def __init__(self, optimizer, successor, warmup_epoch, cons_lr):
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer, -1)

    def get_lr(self):
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]

    def step(self, epoch=None):
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)


def _dassl_lrs(lr, max_epoch, warmup_epoch, cons_lr):
    """Per-epoch learning rates of Dassl's ``build_lr_scheduler`` (cosine, constant warm-up, WARMUP_RECOUNT True),
    stepped once at the end of each epoch as ``TrainerX.forward_backward`` -> ``update_lr`` does."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = _DasslConstantWarmup(opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, float(max_epoch)),
                                 warmup_epoch, cons_lr)
    out = []
    for _ in range(max_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_released_preset_learning_rates_equal_dassl_per_epoch():
    from napari_vip.models.training import TrainConfig

    cfg = TrainConfig.from_preset("released")
    expected = _dassl_lrs(0.002, 50, 1, 1e-5)
    np.testing.assert_allclose([cfg.lr_at(e) for e in range(50)], expected, rtol=1e-12, atol=0)
    # written out: the warm-up epoch, the full rate in epoch 1, then cos(pi (e - 1) / E)
    assert expected[0] == 1e-5 and expected[1] == pytest.approx(0.002, rel=1e-12)
    assert expected[49] == pytest.approx(0.5 * 0.002 * (1 + math.cos(math.pi * 48 / 50)), rel=1e-12)
    # the project's recipe follows the same scheduler (10 epochs)
    project = TrainConfig()
    np.testing.assert_allclose([project.lr_at(e) for e in range(10)], _dassl_lrs(0.002, 10, 1, 1e-5), rtol=1e-12)


def test_released_preset_values_and_overrides():
    from napari_vip.models.training import TrainConfig, _epoch_order

    cfg = TrainConfig.from_preset("released")
    # configs/trainers/ViP/vit_b16_ep50.yaml, train.py's TRAINER.VIP defaults, Dassl's loader
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (50, 32, 0.002, 0.9, 5e-4)
    assert (cfg.warmup_epochs, cfg.warmup_lr, cfg.n_ctx, cfg.class_specific) == (1, 1e-5, 4, False)
    assert (cfg.augment, cfg.caches, cfg.min_steps, cfg.drop_last) == ("released", False, 0, True)
    assert (cfg.text_form, cfg.merge_on, cfg.best_by, cfg.half_precision) == ("released", "raw", "accuracy", True)
    assert cfg.preset == "released" and cfg.overrides() == {}
    assert TrainConfig.from_preset("released", epochs=5, method="coop").overrides() == {"epochs": 5}
    assert TrainConfig.preset_values("released") == {**cfg.to_dict(), "method": "vip"}
    # one pass per epoch, the incomplete last batch dropped (Dassl: drop_last when the set holds a batch)
    assert cfg.steps_per_epoch(70) == 2 and cfg.steps_per_epoch(20) == 1 and cfg.steps_per_epoch(10_000) == 312
    batches = _epoch_order(np.random.default_rng(0), 70, 2, 32, drop_last=True)
    assert [len(b) for b in batches] == [32, 32] and len(set(np.concatenate(batches).tolist())) == 64
    project = TrainConfig()
    assert (project.epochs, project.min_steps, project.caches, project.augment) == (10, 200, True, "none")
    assert TrainConfig(augment=True).augment == "crop-flip"
    with pytest.raises(VipInputError, match="Unknown training preset"):
        TrainConfig.from_preset("paper")


def test_released_augmentation_is_dassls_random_resized_crop_and_flip(tiny_clip):
    from torchvision import transforms as T

    from napari_vip.models.training import released_transform

    tf = released_transform(tiny_clip.preprocess)
    crop, flip, _, norm = tf.transforms
    assert isinstance(crop, T.RandomResizedCrop) and isinstance(flip, T.RandomHorizontalFlip)
    assert tuple(crop.size) == (64, 64) and crop.scale == (0.08, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3)) and crop.interpolation == T.InterpolationMode.BICUBIC
    assert flip.p == 0.5
    ours = [t for t in tiny_clip.preprocess.transforms if isinstance(t, T.Normalize)][0]
    assert tuple(norm.mean) == tuple(ours.mean) and tuple(norm.std) == tuple(ours.std)
    from PIL import Image

    out = tf(Image.fromarray(np.zeros((30, 50, 3), np.uint8)))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32


def test_learn_cli_released_preset_records_the_recipe(tmp_path, tiny_clip_checkpoint, capsys):
    import json

    from PIL import Image

    from napari_vip.cli.main import main
    from napari_vip.models.learned_prompts import LearnedPrompts

    rng = np.random.default_rng(0)
    for name, low in (("normal lung", 0), ("pneumonia", 180)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(low, low + 76, (24, 32)).astype(np.uint8)).save(
                tmp_path / "data" / name / f"{i}.png")
    lib = tmp_path / "descriptors.json"
    lib.write_text(json.dumps(DESCRIPTORS))  # the released descriptor files' plain form
    arch, ckpt = tiny_clip_checkpoint
    out = tmp_path / "p.pt"
    rc = main(["learn", str(tmp_path / "data"), "--model", arch, "--checkpoint", ckpt, "--device", "cpu",
               "--descriptors", str(lib), "--preset", "released", "--epochs", "3", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["config"]["preset"] == "released" and res["config"]["augment"] == "released"
    assert res["provenance"]["preset"] == "released" and res["provenance"]["preset_overrides"] == {"epochs": 3}
    from napari_vip.models.training import TrainConfig

    cfg = TrainConfig.from_preset("released", epochs=3)
    assert [r["lr"] for r in res["histories"]["vip"]] == [cfg.lr_at(e) for e in range(3)]
    assert cfg.lr_at(2) == pytest.approx(0.5 * 0.002 * (1 + math.cos(math.pi / 3)))  # 0.0015
    assert any("float16 on a GPU" in n and "fp32 on cpu" in n for n in res["notes"])
    assert res["provenance"]["activation"] == "gelu"  # the tiny architecture as built
    saved = LearnedPrompts.load(out)
    assert saved.config["preset"] == "released" and saved.config["merge_on"] == "raw"
    assert saved.config["text_form"] == "released"


def test_released_recipe_runs_clip_in_half_precision_on_a_gpu(monkeypatch):
    import napari_vip.models.device as device
    from napari_vip.models.spec import ModelSpec
    from napari_vip.models.training import TrainConfig
    from napari_vip.worker.learn import training_spec

    released, project = TrainConfig.from_preset("released"), TrainConfig()
    spec = ModelSpec("ViT-B-16", pretrained="openai")
    assert spec.precision == "auto"
    monkeypatch.setattr(device, "resolve_device", lambda name="auto": "cuda:0")
    assert training_spec(spec, released, "auto").precision == "fp16"
    assert training_spec(spec, project, "auto") == spec  # the project's recipe keeps the model's choice
    chosen = ModelSpec("ViT-B-16", pretrained="openai", precision="bf16")
    assert training_spec(chosen, released, "auto") == chosen  # an explicit choice wins
    monkeypatch.setattr(device, "resolve_device", lambda name="auto": "cpu")
    assert training_spec(spec, released, "cpu").precision == "fp32"
