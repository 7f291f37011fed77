"""Training and evaluating learned prompts (ViP, CoOp) on a frozen CLIP.

The pieces, each usable alone:

- :class:`TrainConfig` — hyper-parameters (defaults of the ViP/CoOp papers: SGD lr 0.002, momentum 0.9,
  weight decay 5e-4, cosine schedule after one warm-up epoch at lr 1e-5, batch 32);
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


@dataclass
class TrainConfig:
    """Hyper-parameters of prompt learning (all configurable; defaults follow CoOp/ViP)."""

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
    augment: bool = False
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

    def __post_init__(self):
        from .prompt_learning import METHODS

        if self.method not in METHODS:
            raise VipInputError(f"Unknown method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.epochs < 1 or self.batch_size < 1 or self.n_ctx < 1 or self.min_steps < 0:
            raise VipInputError("Epochs, batch size and number of context vectors must be at least 1 "
                                "(and the minimum number of steps not negative).")
        if not self.lr > 0:
            raise VipInputError(f"Learning rate {self.lr} must be positive.")

    @property
    def caches(self) -> bool:
        """Image features are computed once (no augmentation and caching on)."""
        return self.cache_features and not self.augment

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (from 0): ``warmup_lr`` for the warm-up epochs, then cosine from ``lr``."""
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / max(self.epochs, 1)))

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimiser steps in one epoch over ``n_train`` images: one per batch, more for a small set.

        The paper's schedule (SGD, lr 0.002, momentum 0.9, warm-up then cosine) was made for thousands of
        images, i.e. thousands of steps.  On a few dozen images an epoch is one or two steps, and ViP's
        per-class merge queries, whose gradient mostly points along the direction all image features share,
        swing the class scores back and forth for many more steps than that before they settle.  So an epoch
        is at least ``ceil(min_steps / epochs)`` steps, drawing batches from fresh shuffles of the set.
        """
        return max(math.ceil(n_train / self.batch_size), math.ceil(self.min_steps / self.epochs))

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


def encode_images(clip, data, indices, batch_size: int = 32, progress=None, augment_rng=None, label: str = "images"):
    """L2-normalised CLIP image features of ``data`` images ``indices``: ``(N, D)`` float32 tensor.

    Runs under ``torch.no_grad`` (not inference mode, so the features can enter the prompt graph).
    ``augment_rng`` (a numpy Generator) applies random crops/flips.  ``progress(done, total, text)`` per batch.
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
            if augment_rng is not None:
                rgb = _augment(rgb, augment_rng)
            batch.append(clip.preprocess(Image.fromarray(rgb)))
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

    The best epoch has the highest validation accuracy (ties: lower validation loss); without a
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
    aug_rng = np.random.default_rng(config.seed + 1) if config.augment else None
    history: list[EpochRecord] = []
    best_key, best_state, best_epoch = None, None, 0
    n_batches = config.steps_per_epoch(len(train_idx))
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        lr = config.lr_at(epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        order = _epoch_order(gen, len(train_idx), n_batches, config.batch_size)
        learner.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for b in range(n_batches):
            sel = order[b]
            if config.caches:
                feats = train_features[torch.as_tensor(sel, device=train_features.device)]
            else:
                feats = encode_images(clip, data, train_idx[sel], config.batch_size, augment_rng=aug_rng)
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
            key = (rec.val_accuracy, -rec.val_loss)
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


def _epoch_order(gen, n: int, steps: int, batch_size: int) -> list[np.ndarray]:
    """``steps`` batches of indices into ``range(n)``: consecutive shuffles of the set, cut into batches.

    One shuffle when it gives ``steps`` batches; a small set is shuffled again (each shuffle on its own, so
    every image is seen once per pass) until there are enough.
    """
    batches: list[np.ndarray] = []
    while len(batches) < steps:
        order = gen.permutation(n)
        batches += [order[b:b + batch_size] for b in range(0, n, batch_size)]
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
