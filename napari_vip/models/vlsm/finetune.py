"""Fine-tuning a VLSM on the user's masks: one loop, pluggable methods, medvlsm's released recipe by default.

The loop (:func:`finetune`) knows nothing of Qt, files of a data set or processes: it takes a loaded
:class:`~napari_vip.models.vlsm.VlsmModel`, train and validation :class:`FinetuneItem` s (the worker reads them
with :mod:`napari_vip.io.datasets`), a :class:`Recipe` and a :class:`FinetuneMethod`, and writes its output
folder as it goes.  The method decides what is optimised and how the loss is computed: ``"vlsm"``
(:class:`VlsmMethod`, medvlsm's recipe) here, ``"cotexnet"`` in :mod:`napari_vip.models.vlsm.cotexnet`.

medvlsm's recipe, as released (``configs/model/*.yaml``, ``configs/experiment/*.yaml``,
``configs/callbacks/default.yaml``, ``scripts/default_configs.py``, ``src/models/base_module.py``):

- loss: MONAI ``DiceCELoss(lambda_dice=1, lambda_ce=0.2)`` called on **sigmoid probabilities** (``step`` applies
  ``F.sigmoid`` and then the loss).  With the MONAI medvlsm pins (1.1.0) the cross-entropy of a one-channel
  input is ``nn.CrossEntropyLoss`` over a single class, identically 0, so the released loss is the Dice loss of
  the probabilities; :func:`released_dice_ce` computes exactly that on any MONAI version (MONAI >= 1.3 would
  apply binary cross-entropy *with logits* to the probabilities instead).  ``loss="dice_bce"`` is the
  alternative: ``DiceCELoss(sigmoid=True)`` on the logits with MONAI's binary cross-entropy;
- AdamW, weight decay 1e-3, lr 2e-3 and batch 128 for CLIPSeg, BiomedCLIPSeg(-D) (the launch scripts' values;
  the model configs' 2e-4 is overridden by them); ReduceLROnPlateau(factor 0.1, patience 5) on the validation
  loss, once per epoch; gradient norm clipped to 0.5; early stopping on validation Dice (patience 20, min delta
  1e-4, not before epoch 10); the best checkpoint by validation Dice; seed 42; at most 1000 epochs;
- what learns: the decoder (transformers' CLIPSeg computes both towers under ``no_grad``; BiomedCLIPSeg freezes
  them), so the vision encoder's activations are computed once and stored (:mod:`.activation_store`) and a
  frozen text tower's output once per distinct prompt;
- metrics: ``sigmoid > 0.5``, MONAI ``compute_dice(..., include_background=False, ignore_empty=False)`` per image
  at the model's size, averaged.

Distributed: run under ``torchrun --nproc_per_node N`` (the caller initialises ``torch.distributed``: gloo on CPU,
nccl on GPU); each global batch is split over the ranks and their losses weighted so that DDP's gradient mean
equals the one-process gradient of the same global batch; validation sums are all-reduced, so every rank takes
the same scheduler and early-stopping decisions.  Rank 0 writes the output.

Precision (``precision=``, ``fp32|bf16|fp16``; ``napari-vip finetune --precision``): the frozen vision blocks
(what computes the stored activations) are cast to it with float32 output
(:func:`napari_vip.models.precision.apply_vlsm_precision`), so the stored activations come from that precision and
their key carries it (``weights_id`` ends in ``:bf16``: activations of two precisions never mix); everything
that trains (decoder, text tower, CoTexNet's heads) keeps float32 master weights, the loss and the optimiser run
in float32, and the saved weights (``model.safetensors``, ``last.pt``) are float32: the cast blocks are written
from float32 copies taken before the cast, so a fine-tuned folder never holds rounded encoder weights.

Output folder: ``model.safetensors`` (best weights of the whole module, float32), ``config.json`` (family, method,
architecture, preprocessing, base source, recipe, ``precision``), ``provenance.json``, ``history.json`` and ``last.pt``
(resumable state: tensors and plain numbers, ``torch.load(weights_only=True)``-loadable).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from ...core.errors import VipInputError

#: Released batch size and learning rate per family (medvlsm ``scripts/default_configs.py``).
RELEASED = {"clipseg": {"batch_size": 128, "lr": 0.002}, "biomedclipseg": {"batch_size": 128, "lr": 0.002},
            "biomedclipseg-d": {"batch_size": 128, "lr": 0.002}}
LOSSES = ("released", "dice_bce")
TRAIN_PARTS = ("decoder", "decoder+text")


@dataclass
class Recipe:
    """Hyper-parameters of a fine-tuning run (defaults: medvlsm's released recipe; see the module docstring)."""

    prompt: str = "p6"
    epochs: int = 1000
    min_epochs: int = 10
    batch_size: int = 128
    lr: float = 0.002
    weight_decay: float = 1e-3
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    early_stop_patience: int = 20
    early_stop_min_delta: float = 1e-4
    grad_clip: float = 0.5
    seed: int = 42
    threshold: float = 0.5
    loss: str = "released"
    lambda_dice: float = 1.0
    lambda_ce: float = 0.2
    train: str = "decoder"
    store_activations: bool = True
    #: ``"plateau"``: ReduceLROnPlateau on the validation loss once per epoch (medvlsm); ``"cosine"``: cosine decay to
    #: 0 over all steps, updated every step (CoTexNet's timm CosineLRScheduler without warmup).  ``grad_clip`` 0: none.
    schedule: str = "plateau"
    #: One process only: split each global batch as this many processes would and accumulate the parts' gradients
    #: (what ``torchrun --nproc_per_node N`` computes, to the last bit); mathematically a plain step.
    micro_batches: int = 1

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise VipInputError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.train not in TRAIN_PARTS:
            raise VipInputError(f"Unknown --train {self.train!r}; choose one of {', '.join(TRAIN_PARTS)}.")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise VipInputError("Epochs and batch size must be at least 1 and the learning rate positive.")

    @classmethod
    def released(cls, family: str, **overrides) -> Recipe:
        """medvlsm's recipe for ``family`` with ``overrides`` (``None`` values ignored)."""
        base = dict(RELEASED.get(family, RELEASED["clipseg"]))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FinetuneItem:
    """One training or validation sample.

    Attributes
    ----------
    sample_id : str
    file_sha256 : str
        Of the image file (the stored-activation key).
    prompts : dict
        Prompt type -> text or list of texts (medvlsm's ``p0``...``p9``).
    load : callable
        ``load() -> (image (H, W, 3) uint8, mask (S, S) bool at the model's input size)``.
    """

    sample_id: str
    file_sha256: str
    prompts: dict
    load: Callable
    patient_id: str | None = None


class FinetuneMethod(Protocol):
    """How a method trains a VLSM inside :func:`finetune` (``"vlsm"`` here, ``"cotexnet"`` elsewhere).

    ``batch`` is a dict with ``pixel_values (B, 3, S, S)`` or ``activations`` (the vision encoder's ``hidden``
    list of ``(B, T, Dv)``), ``input_ids``/``attention_mask`` ``(B, L)``, ``texts``, ``mask (B, 1, S, S)`` float,
    ``module`` (the network to call: ``model.module`` or its DDP wrapper; call it, not ``model.module``, so DDP
    sees the forward), optional ``conditional (B, D)`` (a frozen text tower's output), ``items`` (the
    :class:`FinetuneItem` s) and any extra keys returned by the method's optional
    ``batch_extras(model, batch, split) -> dict`` (``split`` ``"train"``/``"val"``).  ``input_ids`` are absent when
    the method's optional ``text_frozen()`` is True (the loop then passes ``conditional``).
    """

    name: str

    def trainable(self, model) -> list: ...

    def loss(self, model, batch) -> tuple: ...

    def predict(self, model, batch): ...

    def extra_state(self) -> dict: ...

    def load_extra_state(self, state: dict) -> None: ...

    def default_recipe(self) -> dict: ...


def released_dice_ce(logits, target, lambda_dice: float = 1.0, lambda_ce: float = 0.2):
    """medvlsm's loss as it ran: MONAI ``DiceCELoss(lambda_dice, lambda_ce)`` on ``sigmoid(logits)`` with MONAI
    1.1.0's cross-entropy of a one-channel input (``nn.CrossEntropyLoss`` over one class: 0).

    Parameters
    ----------
    logits, target : torch.Tensor
        ``(B, 1, S, S)``; ``target`` float in {0, 1}.
    """
    import torch.nn.functional as F
    from monai.losses import DiceLoss

    prob = torch_sigmoid(logits)
    dice = DiceLoss()(prob, target)  # DiceCELoss's Dice part: include_background, smooth 1e-5, mean
    ce = F.cross_entropy(prob, target)  # MONAI 1.1.0 DiceCELoss.ce for a float target of one channel
    return lambda_dice * dice + lambda_ce * ce


def torch_sigmoid(x):
    import torch

    return torch.sigmoid(x)


def make_loss(recipe: Recipe) -> Callable:
    """``loss(logits (B, 1, S, S), target (B, 1, S, S) float) -> scalar`` of ``recipe.loss``."""
    if recipe.loss == "released":
        return lambda logits, target: released_dice_ce(logits, target, recipe.lambda_dice, recipe.lambda_ce)
    from monai.losses import DiceCELoss

    fn = DiceCELoss(sigmoid=True, lambda_dice=recipe.lambda_dice, lambda_ce=recipe.lambda_ce)
    return lambda logits, target: fn(logits, target)


def dice_per_image(logits, target, threshold: float = 0.5):
    """``(B,)`` MONAI ``compute_dice(sigmoid(logits) > threshold, target, include_background=False,
    ignore_empty=False)`` as medvlsm's ``step``."""
    from monai.metrics import compute_dice

    pred = torch_sigmoid(logits) > threshold
    return compute_dice(pred.float(), target, include_background=False, ignore_empty=False)[:, 0]


class VlsmMethod:
    """The plain method (``"vlsm"``): medvlsm's recipe on the decoder (``train="decoder+text"``: and the text
    tower)."""

    name = "vlsm"

    def __init__(self, recipe: Recipe | None = None):
        self.recipe = recipe or Recipe()
        self._loss = make_loss(self.recipe)

    def trainable(self, model) -> list:
        """Sets ``requires_grad`` on ``model.module``: the decoder (and the text tower) train, the rest is frozen."""
        groups = model.module.trainable_groups()
        train = {"decoder"} | ({"text"} if self.recipe.train == "decoder+text" else set())
        model.module.requires_grad_(False)
        params = []
        for name in ("decoder", "text"):
            if name in train:
                for p in groups[name]:
                    p.requires_grad_(True)
                    params.append(p)
        return params

    def text_frozen(self) -> bool:
        return self.recipe.train == "decoder"

    def predict(self, model, batch):
        net = batch.get("module", model.module)
        return net(batch.get("input_ids"), batch.get("attention_mask"), pixel_values=batch.get("pixel_values"),
                   hidden=batch.get("activations"), conditional=batch.get("conditional"))

    def loss(self, model, batch):
        logits = self.predict(model, batch)
        return self._loss(logits, batch["mask"]), logits

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        return None

    def default_recipe(self) -> dict:
        return Recipe().to_dict()


@dataclass
class FinetuneOutcome:
    """What a run made: the output folder, its history, the best epoch and Dice, and why it stopped."""

    out_dir: str
    history: list
    best_epoch: int | None
    best_val_dice: float | None
    stopped: str
    resumed_from: int | None = None
    activations: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _dist():
    """``(rank, world_size)`` of an initialised torch.distributed group, else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device) -> list[float]:
    import torch
    import torch.distributed as dist

    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _emit(progress, done, total, text, data=None):
    if progress is not None:
        if data is None:
            progress(done, total, text)
        else:
            progress(done, total, text, data)


class _Data:
    """Per-item model inputs: stored activations or pixel values, masks, and prompts drawn per epoch."""

    def __init__(self, model, items: list[FinetuneItem], recipe: Recipe, store, progress, label: str):
        from .activation_store import activation_key

        self.model, self.items, self.recipe, self.store = model, items, recipe, store
        self.tokens = True  # False when a frozen text tower's output is looked up per text instead
        self.method = None  # set by finetune(): its optional batch_extras(model, batch, split) -> dict
        self.masks: dict[int, np.ndarray] = {}
        self.keys: list[str | None] = [None] * len(items)
        if store is None:
            return
        layers = getattr(model.module, "extract_layers", [])
        todo, planned = [], set()
        for i, it in enumerate(items):
            self.keys[i] = activation_key(it.file_sha256, model.preprocessing_key(), model.weights_id, layers)
            if self.keys[i] not in store and self.keys[i] not in planned:  # an image shared by samples: once
                todo.append(i)
                planned.add(self.keys[i])
        rank, world = _dist()
        shared = world > 1 and store.root is not None
        if shared:  # a store on disk: each process encodes its share, then reads the others' entries
            todo = todo[rank::world]
        self.encoded = len(todo)
        bs = max(1, min(recipe.batch_size, 16))
        for k in range(0, len(todo), bs):
            chunk = todo[k:k + bs]
            images = []
            for i in chunk:
                rgb, mask = items[i].load()
                images.append(rgb)
                self.masks[i] = mask
            act = model.encode_image(model.preprocess(images)).to_arrays()
            for j, i in enumerate(chunk):
                store.put(self.keys[i], {name: a[j] for name, a in act.items()})
            _emit(progress, min(k + bs, len(todo)), len(todo), f"encoding {label} images (stored for every epoch)")
        if shared:
            import torch.distributed as dist

            dist.barrier()

    def mask(self, i: int) -> np.ndarray:
        if i not in self.masks:
            self.masks[i] = self.items[i].load()[1]
        return self.masks[i]

    def text(self, i: int, epoch: int, split: str) -> str:
        from ...core.prompt_ladder import choose_prompt

        text_for = getattr(getattr(self, "method", None), "text_for", None)
        if text_for is not None:  # a method with its own text per item (CoTexNet: the attribute sentence)
            return text_for(self.items[i])
        rng = random.Random(f"{self.recipe.seed}|{split}|{epoch}|{self.items[i].sample_id}")
        return choose_prompt(self.items[i].prompts, self.recipe.prompt, rng)

    def batch(self, idx: list[int], epoch: int, split: str) -> dict:
        import torch

        model = self.model
        texts = [self.text(i, epoch, split) for i in idx]
        out = {"texts": texts, "items": [self.items[i] for i in idx]}
        if self.tokens:
            out.update(model.tokenize(texts))
        if self.store is not None:
            arrays = [self.store.get(self.keys[i]) for i in idx]
            n = sum(1 for k in arrays[0] if k.startswith("hidden_"))
            out["activations"] = [torch.from_numpy(np.stack([a[f"hidden_{j}"] for a in arrays])).to(model.device)
                                  for j in range(n)]
            masks = [self.mask(i) for i in idx]
        else:
            loaded = [self.items[i].load() for i in idx]
            out["pixel_values"] = model.preprocess([rgb for rgb, _ in loaded])
            masks = [m for _, m in loaded]
        out["mask"] = torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)).to(model.device)
        extras = getattr(self.method, "batch_extras", None)
        if extras is not None:  # keys a method asks its data for (CoTexNet: the region's inputs, the sentence)
            out.update(extras(model, out, split) or {})
        return out


def _signature(model, recipe: Recipe, method_name: str, data_sha256: str | None, precision: str = "fp32") -> str:
    keep = {k: v for k, v in recipe.to_dict().items() if k not in ("epochs",)}
    sig = {"weights": model.sha256 or model.weights_id, "family": model.family, "method": method_name,
           "recipe": keep, "data": data_sha256}
    if precision != "fp32":  # fp32 runs keep the signature they always had (their last.pt still resumes)
        sig["precision"] = precision
    return json.dumps(sig, sort_keys=True)


def cast_frozen_encoder(model, precision: str, trainable: list) -> dict:
    """Run ``model``'s frozen vision blocks in ``precision`` (``fp32|bf16|fp16``) for fine-tuning.

    Returns ``{state_dict key: float32 CPU tensor}``: the cast entries as they were before the cast, which
    :func:`_float32_state` writes in their place, so saved weights stay float32 and unrounded.  ``fp32``: ``{}``
    and nothing changes.  Refuses a model whose vision tower was already cast (its float32 weights are gone) and a
    method that would train a cast parameter (master weights must be float32).
    """
    import torch

    from ..precision import CONCRETE, apply_vlsm_precision

    if precision not in CONCRETE:
        raise VipInputError(f"Fine-tuning precision {precision!r} is not one of {', '.join(CONCRETE)}; resolve "
                            "'auto' first (napari_vip.models.precision.resolve_precision).")
    if getattr(model, "precision", "fp32") != "fp32":
        raise VipInputError(f"The model's vision tower already runs in {model.precision}: fine-tuning needs the "
                            "model loaded in float32 (load_vlsm) and casts the frozen encoder itself.")
    if precision == "fp32":
        return {}
    module = model.module
    before = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items() if v.is_floating_point()}
    apply_vlsm_precision(model, precision)
    kept = {k: before[k] for k, v in module.state_dict().items() if k in before and v.dtype != before[k].dtype}
    if any(p.dtype != torch.float32 for p in trainable):
        raise VipInputError(f"This method trains part of the vision tower, which cannot run in {precision} with "
                            "float32 master weights; fine-tune with --precision fp32.")
    return kept


def _float32_state(module, frozen32: dict) -> dict:
    """``module.state_dict()`` with the cast frozen entries replaced by their float32 originals."""
    state = module.state_dict()
    return {k: frozen32.get(k, v) for k, v in state.items()}


def finetune(model, train: list[FinetuneItem], val: list[FinetuneItem], recipe: Recipe, out_dir,
             method: FinetuneMethod | None = None, progress=None, store=None, resume: bool = True,
             data_sha256: str | None = None, provenance: dict | None = None,
             precision: str = "fp32") -> FinetuneOutcome:
    """Fine-tune ``model`` in place; the best weights (by validation Dice) end up in ``model`` and ``out_dir``.

    Parameters
    ----------
    model : VlsmModel
    train, val : list of FinetuneItem
        ``val`` may be empty: the training loss and Dice then stand in for the validation ones (noted).
    recipe : Recipe
    out_dir : path
        Written as the run goes; ``last.pt`` there is resumed from when ``resume`` and its run matches.
    method : FinetuneMethod or None
        ``None``: :class:`VlsmMethod` (medvlsm's recipe).
    progress : callable or None
        ``progress(done, total, text[, data])``; each epoch sends ``data={"epoch": record}``.  Raising in it
        (the worker's cancel) stops the run after the last completed epoch's state was saved.
    store : ActivationStore or None
        Where the frozen vision encoder's activations are kept (``None`` with ``recipe.store_activations``: in
        memory for this run; ``recipe.store_activations=False``: encoded again every step).
    data_sha256, provenance : optional
        Recorded in ``provenance.json`` (the data set's digest, the prompt type's source, ...).
    precision : str
        ``fp32`` (default), ``bf16`` or ``fp16``: what the frozen vision encoder runs in (module docstring);
        ``model`` must be loaded in float32.  The trained parts and the saved weights stay float32.
    """
    import torch

    from .activation_store import ActivationStore

    if not train:
        raise VipInputError("Fine-tuning needs training samples: the train split is empty.")
    method = method or VlsmMethod(recipe)
    rank, world = _dist()
    if world > 1 and recipe.micro_batches > 1:
        raise VipInputError("Micro-batches emulate several processes in one: leave them out under torchrun.")
    if recipe.batch_size < world:
        raise VipInputError(f"Batch size {recipe.batch_size} is smaller than the {world} processes; give at least "
                            "one sample per process.")
    out = Path(out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed % (2 ** 32))
    device = model.device
    params = method.trainable(model)
    if not params:
        raise VipInputError(f"Method {method.name} has nothing to train.")
    frozen32 = cast_frozen_encoder(model, precision, params)
    if recipe.store_activations and store is None:
        store = ActivationStore(None)
    if not recipe.store_activations:
        store = None
    t_enc = time.perf_counter()
    train_data = _Data(model, train, recipe, store, progress, "training")
    val_data = _Data(model, val, recipe, store, progress, "validation") if val else None
    enc_seconds = time.perf_counter() - t_enc
    module = model.module
    net = module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(module, device_ids=None if str(device) == "cpu" else [torch.device(device)])
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "cosine":  # per optimiser step, to 0 at the last one (CoTexNet's released schedule)
        total_steps = max(1, recipe.epochs * math.ceil(len(train) / recipe.batch_size))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    elif recipe.schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=recipe.plateau_factor,
                                                           patience=recipe.plateau_patience)
    else:
        raise VipInputError(f"Unknown schedule {recipe.schedule!r}; choose plateau or cosine.")
    signature = _signature(model, recipe, method.name, data_sha256, precision)
    history, start, best_dice, best_epoch, es_best, es_wait, resumed = [], 0, -math.inf, None, -math.inf, 0, None
    last = out / "last.pt"
    if resume and last.is_file():
        state = torch.load(str(last), map_location="cpu", weights_only=True)
        if state.get("signature") != signature:
            raise VipInputError(f"{str(out)!r} holds another run (other weights, data or recipe); choose a new "
                                "--out folder, or remove last.pt there to start again.")
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(json.loads(state["scheduler"]))
        method.load_extra_state(state.get("method", {}))
        history = json.loads(state["history"])
        start = resumed = int(state["epoch"]) + 1
        best_dice, best_epoch = float(state["best_dice"]), state["best_epoch"]
        best_epoch = None if best_epoch is None or int(best_epoch) < 0 else int(best_epoch)
        es_best, es_wait = float(state["es_best"]), int(state["es_wait"])
    text_cache: dict[str, object] = {}
    frozen_text = getattr(method, "text_frozen", lambda: False)()
    for data in (train_data, val_data):
        if data is not None:
            data.tokens, data.method = not frozen_text, method

    def with_conditional(batch):
        if not frozen_text:
            return batch
        missing = [t for t in dict.fromkeys(batch["texts"]) if t not in text_cache]
        if missing:
            tok = model.tokenize(missing)
            with torch.no_grad():
                cond = module.text_conditional(tok["input_ids"], tok["attention_mask"])
            text_cache.update(zip(missing, cond))
        batch["conditional"] = torch.stack([text_cache[t] for t in batch["texts"]])
        return batch

    stopped = "epochs"
    n_train = len(train)
    for epoch in range(start, recipe.epochs):
        t0 = time.perf_counter()
        module.train()
        gen = torch.Generator().manual_seed(recipe.seed * 1000003 + epoch)
        order = torch.randperm(n_train, generator=gen).tolist()
        sums = [0.0, 0.0, 0.0]  # loss * n, dice sum, n (this rank)
        parts = world if world > 1 else max(1, recipe.micro_batches)
        for b in range(0, n_train, recipe.batch_size):
            glob = order[b:b + recipe.batch_size]
            opt.zero_grad(set_to_none=True)
            for part in ([rank] if world > 1 else range(parts)):
                mine = glob[part::parts]
                # the part's mean loss weighted so that the mean over parts (DDP averages gradients over the
                # processes) is the gradient of the global batch's mean loss
                weight = len(mine) * parts / len(glob)
                if not mine:
                    mine, weight = glob[:1], 0.0
                batch = with_conditional(train_data.batch(mine, epoch, "train"))
                batch["module"] = net
                loss, logits = method.loss(model, batch)
                (loss * weight if world > 1 else loss * weight / parts).backward()
                if weight:
                    with torch.no_grad():
                        d = dice_per_image(logits.detach(), batch["mask"], recipe.threshold)
                    sums[0] += float(loss.detach()) * len(mine)
                    sums[1] += float(d.sum())
                    sums[2] += len(mine)
            if recipe.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            opt.step()
            if recipe.schedule == "cosine":
                sched.step()
        tl, td, tn = _all_sum(sums, device)
        train_loss, train_dice = tl / tn, td / tn
        if val_data is not None:
            val_loss, val_dice = _evaluate(model, method, val_data, recipe, net, epoch, with_conditional)
        else:
            val_loss, val_dice = train_loss, train_dice
        if recipe.schedule == "plateau":
            sched.step(val_loss)
        improved = val_dice > best_dice
        if improved:
            best_dice, best_epoch = val_dice, epoch
            if rank == 0:
                _save_weights(module, out / "model.safetensors", frozen32)
        if val_dice - recipe.early_stop_min_delta > es_best:
            es_best, es_wait = val_dice, 0
        else:
            es_wait += 1
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "train_dice": train_dice, "val_loss": val_loss,
               "val_dice": val_dice, "lr": opt.param_groups[0]["lr"], "best": improved,
               "seconds": round(time.perf_counter() - t0, 3)}
        history.append(rec)
        if rank == 0:
            state = {"signature": signature, "epoch": epoch, "module": _float32_state(module, frozen32),
                     "optimizer": opt.state_dict(), "scheduler": json.dumps(_plain(sched.state_dict())),
                     "history": json.dumps(history), "best_dice": best_dice,
                     "best_epoch": -1 if best_epoch is None else best_epoch, "es_best": es_best, "es_wait": es_wait,
                     "method": method.extra_state()}
            tmp = out / ".last.pt.tmp"
            torch.save(state, str(tmp))
            tmp.replace(last)
            (out / "history.json").write_text(json.dumps(history, indent=1))
        _emit(progress, epoch + 1, recipe.epochs,
              f"epoch {epoch + 1}/{recipe.epochs}: loss {train_loss:.4f}, Dice {train_dice:.3f}; validation loss "
              f"{val_loss:.4f}, Dice {val_dice:.3f}" + (" (best)" if improved else ""), {"epoch": rec})
        if es_wait >= recipe.early_stop_patience and epoch + 1 >= recipe.min_epochs:
            stopped = f"early stop: validation Dice did not improve by {recipe.early_stop_min_delta} for " \
                      f"{recipe.early_stop_patience} epochs"
            break
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    best_file = out / "model.safetensors"
    if best_file.is_file():
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(best_file), device=str(device)))
    module.eval()
    if rank == 0:
        write_outputs(model, out, recipe, method.name, history, best_epoch, best_dice, stopped, data_sha256,
                      provenance or {}, precision)
    acts = {"stored": store is not None, "encoded": getattr(train_data, "encoded", 0)
            + getattr(val_data, "encoded", 0) if store is not None else 0, "seconds": round(enc_seconds, 3)}
    return FinetuneOutcome(str(out), history, None if best_epoch is None else best_epoch + 1,
                           None if best_epoch is None else best_dice, stopped, resumed, acts)


def _evaluate(model, method, data: _Data, recipe: Recipe, net, epoch: int, with_conditional):
    import torch

    rank, world = _dist()
    module = model.module
    module.eval()
    n = len(data.items)
    idx = list(range(n))[rank::world]
    sums = [0.0, 0.0, 0.0]
    with torch.no_grad():
        for b in range(0, len(idx), recipe.batch_size):
            chunk = idx[b:b + recipe.batch_size]
            batch = with_conditional(data.batch(chunk, epoch, "val"))
            batch["module"] = module  # no gradient sync in validation
            loss, logits = method.loss(model, batch)
            d = dice_per_image(logits, batch["mask"], recipe.threshold)
            sums[0] += float(loss) * len(chunk)
            sums[1] += float(d.sum())
            sums[2] += len(chunk)
    vl, vd, vn = _all_sum(sums, model.device)
    return vl / vn, vd / vn


def _plain(obj):
    """A scheduler state made JSON-ready (numbers, strings, lists, dicts)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj if isinstance(obj, (int, float, str, bool)) or obj is None else str(obj)


def _save_weights(module, path: Path, frozen32: dict | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in _float32_state(module, frozen32 or {}).items()}
    tmp = path.parent / f".{path.name}.tmp"
    save_file(state, str(tmp))
    tmp.replace(path)


def write_outputs(model, out: Path, recipe: Recipe, method_name: str, history, best_epoch, best_dice, stopped,
                  data_sha256, provenance: dict, precision: str = "fp32") -> None:
    """``config.json`` (what :func:`~napari_vip.models.vlsm.build.load_vlsm` reads back), ``provenance.json``,
    ``history.json`` and the tokenizer of a fine-tuned folder.  ``precision``: what the frozen encoder ran in
    while training (recorded; the saved weights are float32 whatever it was)."""
    from ... import __version__
    from ..checkpoint import sha256_file

    config = {"napari_vip": __version__, "family": model.family, "method": method_name,
              "input_size": model.input_size, "mean": list(model.mean), "std": list(model.std),
              "context_length": model.context_length, "threshold": recipe.threshold,
              "base": {"spec": model.spec.to_dict(), "weights_sha256": model.sha256, "method": model.method},
              "recipe": recipe.to_dict(), "precision": training_precision(precision)}
    if model.family == "clipseg":
        config["clipseg"] = model.config["clipseg"]
        model.tokenizer.save_pretrained(str(out / "tokenizer"))
    else:
        from .biomed import save_text_tower

        config["open_clip"] = save_text_tower(model, out)
        config["clipseg"] = model.config["clipseg"]
    (out / "config.json").write_text(json.dumps(config, indent=1))
    weights = out / "model.safetensors"
    prov = {"napari_vip_version": __version__, "family": model.family, "method": method_name,
            "base_model": model.spec.to_dict(), "base_weights_sha256": model.sha256, "base_untrained": model.untrained,
            "untrained": model.untrained, "weights_sha256": sha256_file(weights) if weights.is_file() else None,
            "data_sha256": data_sha256, "prompt_type": recipe.prompt, "recipe": recipe.to_dict(),
            "epochs_run": len(history), "best_epoch": None if best_epoch is None else best_epoch + 1,
            "best_val_dice": None if best_epoch is None else best_dice, "stopped": stopped,
            "precision": training_precision(precision), **provenance}
    (out / "provenance.json").write_text(json.dumps(prov, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))


def training_precision(precision: str) -> dict:
    """What a fine-tuning run recorded of its precision: the frozen encoder's (``fp32|bf16|fp16`` and its dtype)
    and the trained and saved weights' (always float32)."""
    from ..precision import DTYPE_NAMES

    return {"encoder": precision, "encoder_dtype": DTYPE_NAMES[precision], "trained_dtype": "float32",
            "saved_dtype": "float32"}
