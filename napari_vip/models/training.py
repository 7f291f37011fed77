"""Training and evaluating learned prompts (ViP, CoOp) on a frozen CLIP.

The pieces, each usable alone:

- :class:`TrainConfig` — hyper-parameters (defaults of the ViP/CoOp papers: SGD lr 0.002, momentum 0.9,
  weight decay 5e-4, Dassl's cosine schedule after one warm-up epoch at lr 1e-5, batch 32), started from a
  named recipe (:data:`PRESETS`: the project's for small sets, or the released ViP configs');
- :func:`encode_images` — frozen CLIP image features of labelled images;
- :func:`train_prompts` — the training loop (features cached once when there is no augmentation);
- :func:`run_learning` — split, zero-shot baselines, train ViP and/or CoOp, evaluate all on the same split
  (:func:`~napari_vip.core.metrics.classification_metrics`) and keep each method's
  :class:`~napari_vip.models.learned_prompts.LearnedPrompts`.

Every long step calls ``progress(done, total, text)``; a progress callback that raises (the worker's
:class:`~napari_vip.worker.engine.ProgressReporter` on cancel) stops training cleanly.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.errors import VipInputError
from ..core.metrics import classification_metrics
from .learned_prompts import LearnedPrompts

#: Image augmentation of the training batches: none (features cached), the project's light crop (80-100% of each
#: side) and flip, or the released configs' ``random_resized_crop`` (scale 0.08-1, aspect 3/4-4/3, bicubic, to the
#: model's input size) and ``random_flip``.
AUGMENTATIONS = ("none", "crop-flip", "released")
#: Which epoch's prompts are kept: the best validation accuracy with ties to the lower validation loss, or (Dassl's
#: ``best_val``) the first epoch of the best validation accuracy.
BEST_BY = ("accuracy+loss", "accuracy")

#: Named recipes: :class:`TrainConfig` field values.  ``project`` is the dataclass defaults (small data sets: at least
#: 200 steps, cached features, 10 epochs); ``released`` is xiaofang007/ViP's ``configs/trainers/ViP/vit_b16_ep50.yaml``
#: with its ``train.py`` defaults (N_CTX 4, CSC False, PREC fp16, TEST.FINAL_MODEL best_val) and Dassl's data loader.
PRESETS = {
    "project": {},
    "released": {"epochs": 50, "batch_size": 32, "lr": 0.002, "momentum": 0.9, "weight_decay": 5e-4,
                 "warmup_epochs": 1, "warmup_lr": 1e-5, "n_ctx": 4, "class_specific": False, "init_std": 0.02,
                 "augment": "released", "cache_features": False, "min_steps": 0, "drop_last": True,
                 "text_form": "released", "merge_on": "raw", "best_by": "accuracy", "half_precision": True},
}


@dataclass
class TrainConfig:
    """Hyper-parameters of prompt learning (all configurable; defaults follow CoOp/ViP).

    Build one from a recipe with :meth:`from_preset`; ``preset`` names the recipe it started from and
    :meth:`overrides` what was changed from it (both recorded in the results and the prompts file).
    """

    method: str = "vip"
    n_ctx: int = 4
    class_specific: bool = False
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    val_fraction: float = 0.2
    seed: int = 0
    #: :data:`AUGMENTATIONS` (``True``/``False`` read as ``crop-flip``/``none``).
    augment: str = "none"
    cache_features: bool = True
    init_std: float = 0.02
    #: How descriptors become prompt text (:data:`~napari_vip.models.prompt_learning.TEXT_FORMS`).
    text_form: str = "project"
    #: What the merge prompt attends over: ``raw`` projected descriptor features, as released
    #: (:data:`~napari_vip.models.prompt_learning.MERGE_ON`).
    merge_on: str = "raw"
    #: Fewest optimiser steps of a run: a small training set is cycled within each epoch until
    #: ``epochs * steps_per_epoch`` reaches this (see :meth:`steps_per_epoch`).
    min_steps: int = 200
    #: Drop the last, incomplete batch of an epoch when the set holds at least one batch (Dassl's training loader).
    drop_last: bool = False
    #: :data:`BEST_BY`.
    best_by: str = "accuracy+loss"
    #: Run the frozen CLIP in float16 where the device runs it (CUDA), as the released code's default ``PREC fp16``;
    #: applied when the model's precision is ``auto`` (elsewhere float32).  The learned tensors stay float32.
    half_precision: bool = False
    #: The recipe of :data:`PRESETS` this configuration started from.
    preset: str = "project"

    def __post_init__(self):
        from .prompt_learning import MERGE_ON, METHODS, TEXT_FORMS

        if self.method not in METHODS:
            raise VipInputError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if isinstance(self.augment, bool):
            self.augment = "crop-flip" if self.augment else "none"
        for name, value, allowed in (("preset", self.preset, tuple(PRESETS)), ("augment", self.augment, AUGMENTATIONS),
                                     ("best_by", self.best_by, BEST_BY), ("text_form", self.text_form, TEXT_FORMS),
                                     ("merge_on", self.merge_on, MERGE_ON)):
            if value not in allowed:
                raise VipInputError(f"Unknown {name} {value!r}; choose one of {', '.join(allowed)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.n_ctx < 1 or self.min_steps < 0:
            raise VipInputError("Epochs, batch size and number of context vectors must be at least 1 "
                                "(and the minimum number of steps not negative).")
        if not self.lr > 0:
            raise VipInputError(f"Learning rate {self.lr} must be positive.")

    @staticmethod
    def preset_values(preset: str) -> dict:
        """Every field's value in the recipe ``preset`` (no torch import: the docks call it)."""
        from dataclasses import fields as dataclass_fields

        if preset not in PRESETS:
            raise VipInputError(f"Unknown training preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        return {**{f.name: f.default for f in dataclass_fields(TrainConfig)}, **PRESETS[preset], "preset": preset}

    @classmethod
    def from_preset(cls, preset: str = "project", **fields) -> TrainConfig:
        """The recipe ``preset`` of :data:`PRESETS` with ``fields`` changed."""
        if preset not in PRESETS:
            raise VipInputError(f"Unknown training preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[preset], **fields, "preset": preset})

    def overrides(self) -> dict:
        """The fields that differ from the recipe :attr:`preset` (``method``, ``seed`` and ``val_fraction``
        belong to the run, not the recipe)."""
        base = TrainConfig.from_preset(self.preset, method=self.method).to_dict()
        mine = self.to_dict()
        return {k: v for k, v in mine.items() if v != base[k] and k not in ("seed", "val_fraction")}

    @property
    def caches(self) -> bool:
        """Image features are computed once (no augmentation and caching on)."""
        return self.cache_features and self.augment == "none"

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (from 0), per epoch as Dassl's ``ConstantWarmupScheduler`` around
        ``CosineAnnealingLR(T_max=epochs)`` gives it: ``warmup_lr`` for the ``W = warmup_epochs`` warm-up epochs,
        then ``0.5 * lr * (1 + cos(pi * (epoch - W) / epochs))``: the full rate in the first epoch after the warm-up
        (the cosine restarts there; Dassl's ``WARMUP_RECOUNT``)."""
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        return 0.5 * self.lr * (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / max(self.epochs, 1)))

    def batches_per_pass(self, n_train: int) -> int:
        """Batches in one pass over ``n_train`` images (the last, incomplete one dropped with ``drop_last`` when
        there is at least one full batch, as Dassl's loader)."""
        if self.drop_last and n_train >= self.batch_size:
            return n_train // self.batch_size
        return math.ceil(n_train / self.batch_size)

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimiser steps in one epoch over ``n_train`` images: one per batch, more for a small set.

        The paper's schedule (SGD, lr 0.002, momentum 0.9, warm-up then cosine) was made for thousands of
        images, i.e. thousands of steps.  On a few dozen images an epoch is one or two steps, and ViP's
        per-class merge queries, whose gradient mostly points along the direction all image features share,
        swing the class scores back and forth for many more steps than that before they settle.  So an epoch
        is at least ``ceil(min_steps / epochs)`` steps, drawing batches from fresh shuffles of the set.
        """
        return max(self.batches_per_pass(n_train), math.ceil(self.min_steps / self.epochs))

    def to_dict(self) -> dict:
        return asdict(self)


# -- images -> features -----------------------------------------------------------------------------------------
def _augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random crop of 80-100% of each side and a horizontal flip half of the time; uint8 in and out."""
    h, w = rgb.shape[:2]
    s = rng.uniform(0.8, 1.0)
    ch, cw = max(1, int(h * s)), max(1, int(w * s))
    r0, c0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = rgb[r0:r0 + ch, c0:c0 + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def released_transform(preprocess):
    """The released configs' training transform for a model whose test transform is ``preprocess``.

    Dassl's ``random_resized_crop`` + ``random_flip`` + ``normalize``: torchvision's ``RandomResizedCrop`` to the
    model's input size (scale 0.08-1, aspect 3/4-4/3, bicubic), ``RandomHorizontalFlip`` (p 0.5), ``ToTensor`` and
    the model's own ``Normalize``.  Randomness from torch's global generator (seeded by :func:`build_learner`).

    Returns
    -------
    callable
        PIL image -> ``(3, S, S)`` float32 tensor.
    """
    from torchvision import transforms as T

    size, norm = None, None
    for t in getattr(preprocess, "transforms", []):
        if isinstance(t, T.CenterCrop):
            size = t.size
        elif isinstance(t, T.Resize) and size is None:
            size = t.size
        elif isinstance(t, T.Normalize):
            norm = t
    if size is None or norm is None:
        raise VipInputError("The released augmentation needs the model's input size and normalisation, and this "
                            "model's preprocessing does not show them; use --augment crop-flip or none.")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) == 1:
        size = (size[0], size[0])
    return T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(norm.mean, norm.std)])


def train_transform(clip, config: TrainConfig):
    """What turns a training image (``(h, w, 3)`` uint8) into the model's input, by ``config.augment``:
    ``None`` for no augmentation (``clip.preprocess``), else a callable ``rgb -> (3, S, S)`` tensor."""
    from PIL import Image

    if config.augment == "none":
        return None
    if config.augment == "released":
        tf = released_transform(clip.preprocess)
        return lambda rgb: tf(Image.fromarray(rgb))
    rng = np.random.default_rng(config.seed + 1)
    return lambda rgb: clip.preprocess(Image.fromarray(_augment(rgb, rng)))


def encode_images(clip, data, indices, batch_size: int = 32, progress=None, transform=None, label: str = "images"):
    """L2-normalised CLIP image features of ``data`` images ``indices``: ``(N, D)`` float32 tensor.

    Runs under ``torch.no_grad`` (not inference mode, so the features can enter the prompt graph).
    ``transform`` (:func:`train_transform`) replaces the model's preprocessing (augmentation).
    ``progress(done, total, text)`` per batch.
    """
    import torch
    from PIL import Image

    indices = list(np.asarray(indices, dtype=np.int64))
    out = []
    total = max(1, math.ceil(len(indices) / batch_size))
    for b in range(0, len(indices), batch_size):
        batch = []
        for i in indices[b:b + batch_size]:
            rgb = data.read(int(i))
            batch.append(transform(rgb) if transform is not None else clip.preprocess(Image.fromarray(rgb)))
        with torch.no_grad():
            f = clip.model.encode_image(torch.stack(batch).to(clip.device))
            out.append(torch.nn.functional.normalize(f.float(), dim=-1))
        if progress is not None:
            progress(b // batch_size + 1, total, f"encoding {label} {min(b + batch_size, len(indices))}/{len(indices)}")
    if not out:
        return torch.zeros(0, 1)
    return torch.cat(out)


# -- training ---------------------------------------------------------------------------------------------------
@dataclass
class EpochRecord:
    """One epoch of training: mean training loss and accuracy; validation figures when there is a split."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainOutcome:
    learner: object  # PromptLearner holding the best state
    history: list[EpochRecord]
    best_epoch: int
    seconds: float


def build_learner(clip, classes, descriptors, config: TrainConfig):
    """A :class:`~napari_vip.models.prompt_learning.PromptLearner` on ``clip`` with CLIP frozen."""
    import torch

    from .prompt_learning import PromptLearner, TextTower, learner_options

    for p in clip.model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(config.seed)
    tower = TextTower(clip.model, clip.tokenizer)
    return PromptLearner(tower, classes, descriptors, config.method, logit_scale=clip.logit_scale(),
                         init_std=config.init_std, **learner_options(config.to_dict()))


def _emit(progress, done, total, text, data=None):
    if progress is not None:
        if data is None:
            progress(done, total, text)
        else:
            progress(done, total, text, data)


def train_prompts(clip, data, descriptors, config: TrainConfig, train_idx, val_idx=None, progress=None,
                  train_features=None, val_features=None, step_offset: int = 0, total_steps: int | None = None,
                  on_epoch=None) -> TrainOutcome:
    """Train a prompt learner on ``data[train_idx]``; keep the state of the best validation epoch.

    Parameters
    ----------
    clip : ClipModel
        Frozen; only prompt parameters get gradients.
    data : LabelledImages
    descriptors : dict or None
        ``{class: [descriptor, ...]}`` (ViP).
    train_idx, val_idx : array-like of int
    train_features, val_features : torch.Tensor, optional
        Precomputed ``(N, D)`` normalised features (used when ``config.caches``; computed here otherwise).
    progress : callable, optional
        ``progress(done, total, text)``; one step per epoch (``total`` = epochs unless ``total_steps``).
        The text of an epoch's last report is :func:`format_epoch` of its record.
    on_epoch : callable, optional
        ``on_epoch(EpochRecord)`` after each epoch.

    The best epoch has the highest validation accuracy (ties: lower validation loss; with ``best_by="accuracy"``
    the first such epoch, as Dassl's ``best_val``); without a
    validation split, the lowest training loss.
    """
    import torch

    t_start = time.perf_counter()
    train_idx = np.asarray(train_idx, dtype=np.int64)
    val_idx = np.asarray(val_idx if val_idx is not None else [], dtype=np.int64)
    if len(train_idx) == 0:
        raise VipInputError("No training images left after the split; add images or lower the validation fraction.")
    total = total_steps or config.epochs
    learner = build_learner(clip, data.classes, descriptors, config)
    dev = clip.device
    y_train = torch.as_tensor(data.labels[train_idx], device=dev)
    y_val = torch.as_tensor(data.labels[val_idx], device=dev)
    if config.caches and train_features is None:
        train_features = encode_images(clip, data, train_idx, config.batch_size)
    if len(val_idx) and val_features is None:
        val_features = encode_images(clip, data, val_idx, config.batch_size)
    params = [p for p in learner.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    gen = np.random.default_rng(config.seed)
    transform = train_transform(clip, config)
    history: list[EpochRecord] = []
    best_key, best_state, best_epoch = None, None, 0
    n_batches = config.steps_per_epoch(len(train_idx))
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        lr = config.lr_at(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        order = _epoch_order(gen, len(train_idx), n_batches, config.batch_size,
                             config.drop_last and len(train_idx) >= config.batch_size)
        learner.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(n_batches):
            sel = order[b]
            if config.caches:
                feats = train_features[torch.as_tensor(sel, device=train_features.device)]
            else:
                feats = encode_images(clip, data, train_idx[sel], config.batch_size, transform=transform)
            target = y_train[torch.as_tensor(sel, device=dev)]
            logits = learner(feats)
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(sel)
            correct += int((logits.detach().argmax(1) == target).sum())
            seen += len(sel)
            _emit(progress, step_offset + epoch, total,
                  f"{config.method} epoch {epoch + 1}/{config.epochs}: batch {b + 1}/{n_batches}")
        rec = EpochRecord(epoch + 1, lr, loss_sum / seen, correct / seen)
        learner.eval()
        if len(val_idx):
            with torch.no_grad():
                vl = learner(val_features)
                rec.val_loss = float(torch.nn.functional.cross_entropy(vl, y_val))
                rec.val_accuracy = float((vl.argmax(1) == y_val).float().mean())
            key = (rec.val_accuracy,) if config.best_by == "accuracy" else (rec.val_accuracy, -rec.val_loss)
        else:
            key = (-rec.train_loss,)
        if best_key is None or key > best_key:
            best_key, best_epoch = key, rec.epoch
            best_state = copy.deepcopy(learner.trainable_state())
        rec.seconds = time.perf_counter() - t0
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        _emit(progress, step_offset + epoch + 1, total, format_epoch(config.method, rec, config.epochs),
              {"epoch": epoch_data(config.method, rec, config.epochs)})
    learner.load_trainable_state(best_state)
    learner.eval()
    return TrainOutcome(learner, history, best_epoch, time.perf_counter() - t_start)


def _epoch_order(gen, n: int, steps: int, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    """``steps`` batches of indices into ``range(n)``: consecutive shuffles of the set, cut into batches.

    One shuffle when it gives ``steps`` batches; a small set is shuffled again (each shuffle on its own, so
    every image is seen once per pass) until there are enough.  ``drop_last`` leaves out each shuffle's last,
    incomplete batch (``n >= batch_size`` assumed).
    """
    batches: list[np.ndarray] = []
    stop = n - batch_size + 1 if drop_last else n
    while len(batches) < steps:
        order = gen.permutation(n)
        batches += [order[b:b + batch_size] for b in range(0, stop, batch_size)]
    return batches[:steps]


def format_epoch(method: str, rec: EpochRecord, epochs: int) -> str:
    """``"vip epoch 3/10 loss 0.512 acc 0.750 val_loss 0.600 val_acc 0.700"``: the progress text of an epoch."""
    text = f"{method} epoch {rec.epoch}/{epochs} loss {rec.train_loss:.4f} acc {rec.train_accuracy:.4f}"
    if rec.val_loss is not None:
        text += f" val_loss {rec.val_loss:.4f} val_acc {rec.val_accuracy:.4f}"
    return text


def epoch_data(method: str, rec: EpochRecord, epochs: int) -> dict:
    """An epoch's numbers for a live plot (the ``"epoch"`` data of its progress message):
    ``method``, ``epoch``, ``epochs``, ``loss``, ``acc`` and, with a validation split, ``val_loss``, ``val_acc``."""
    out = {"method": method, "epoch": int(rec.epoch), "epochs": int(epochs), "loss": float(rec.train_loss),
           "acc": float(rec.train_accuracy)}
    if rec.val_loss is not None:
        out.update(val_loss=float(rec.val_loss), val_acc=float(rec.val_accuracy))
    return out


# -- zero-shot baselines ----------------------------------------------------------------------------------------
def zero_shot_class_features(clip, classes, template: str, modality: str):
    """``(C, D)`` normalised text features of one class-name prompt per class."""
    from ..core.prompts import build_prompt

    prompts = [build_prompt(c, "", template, modality) for c in classes]
    return clip.encode_texts(prompts).clone(), prompts


def zero_shot_descriptor_features(clip, classes, descriptors):
    """``(C, D)``: each class's normalised mean of its normalised descriptor features."""
    import torch

    from .clip import class_embedding
    from .prompt_learning import descriptor_text

    return torch.stack([class_embedding(clip.encode_texts([descriptor_text(d) for d in descriptors[c]]))
                        for c in classes])


# -- the whole run ----------------------------------------------------------------------------------------------
@dataclass
class LearningRun:
    """What :func:`run_learning` produced: learned prompts per method and the comparison on one split."""

    prompts: dict  # method -> LearnedPrompts
    histories: dict  # method -> list[EpochRecord]
    evaluation: dict  # row name -> metrics dict (zero-shot rows included)
    split: dict  # {"train": n, "val": n, "evaluated_on": "val"|"train", "seed": s}
    seconds: dict = field(default_factory=dict)


def run_learning(clip, data, descriptors, config: TrainConfig, methods=None, template: str | None = None,
                 modality: str | None = None, progress=None, on_epoch=None) -> LearningRun:
    """Split ``data``, train each method of ``methods`` (default ``[config.method]``) and compare.

    Evaluation uses the validation split (or the training images when there is none) for the zero-shot
    baselines (class names; descriptors when given) and each trained method.
    ``on_epoch(method, EpochRecord)`` follows training live.
    """
    from ..core.datasets import split_indices
    from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE

    methods = list(dict.fromkeys(methods or [config.method]))
    template = template or DEFAULT_TEMPLATE
    modality = modality or DEFAULT_MODALITY
    if "vip" in methods:
        from .prompt_learning import check_descriptors

        descriptors = check_descriptors(data.classes, descriptors, modality)
    elif descriptors:
        try:
            from .prompt_learning import check_descriptors

            descriptors = check_descriptors(data.classes, descriptors, modality)
        except VipInputError:
            descriptors = None
    train_idx, val_idx = split_indices(data.labels, config.val_fraction, config.seed)
    eval_idx = val_idx if len(val_idx) else train_idx
    n_enc = math.ceil(len(data) / config.batch_size)
    total = n_enc + config.epochs * len(methods) + 1
    seconds = {}

    def enc_progress(done, tot, text):
        _emit(progress, done, total, text)

    t0 = time.perf_counter()
    all_idx = np.concatenate([train_idx, val_idx])
    feats = encode_images(clip, data, all_idx, config.batch_size, enc_progress)
    seconds["encode_images"] = time.perf_counter() - t0
    train_f, val_f = feats[:len(train_idx)], feats[len(train_idx):]
    eval_f = val_f if len(val_idx) else train_f
    y_eval = data.labels[eval_idx]
    evaluation = {}
    zs, zs_prompts = zero_shot_class_features(clip, data.classes, template, modality)
    evaluation["zero-shot (class names)"] = classification_metrics(clip.probabilities(eval_f, zs), y_eval, data.classes)
    if descriptors:
        zd = zero_shot_descriptor_features(clip, data.classes, descriptors)
        evaluation["zero-shot (descriptors)"] = classification_metrics(clip.probabilities(eval_f, zd), y_eval,
                                                                       data.classes)
    prompts, histories = {}, {}
    for m, method in enumerate(methods):
        cfg = TrainConfig(**{**config.to_dict(), "method": method})
        outcome = train_prompts(clip, data, descriptors if method == "vip" else None, cfg, train_idx, val_idx,
                                progress, train_f if cfg.caches else None, val_f if len(val_idx) else None,
                                step_offset=n_enc + m * config.epochs, total_steps=total,
                                on_epoch=(lambda rec, meth=method: on_epoch(meth, rec)) if on_epoch else None)
        seconds[method] = outcome.seconds
        import torch

        with torch.no_grad():
            scores = clip.probabilities(eval_f, outcome.learner.class_features())
        metrics = classification_metrics(scores, y_eval, data.classes)
        evaluation[METHOD_NAMES[method]] = metrics
        histories[method] = outcome.history
        prompts[method] = LearnedPrompts.from_learner(
            outcome.learner, clip, cfg,
            metrics={"evaluated_on": "val" if len(val_idx) else "train", method: metrics,
                     "zero-shot (class names)": evaluation["zero-shot (class names)"],
                     "best_epoch": outcome.best_epoch},
            history=[r.to_dict() for r in outcome.history],
            data={"source": data.source, "counts": data.counts(), "train": int(len(train_idx)),
                  "val": int(len(val_idx))})
    _emit(progress, total, total, "done")
    split = {"train": int(len(train_idx)), "val": int(len(val_idx)),
             "evaluated_on": "val" if len(val_idx) else "train", "seed": config.seed,
             "val_fraction": config.val_fraction, "zero_shot_prompts": zs_prompts}
    return LearningRun(prompts, histories, evaluation, split, seconds)


METHOD_NAMES = {"vip": "ViP (context + merge prompts)", "coop": "CoOp (context + class name)"}
