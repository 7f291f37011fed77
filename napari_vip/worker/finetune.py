"""Fine-tuning a VLSM on a data set in the worker: :class:`FinetuneRequest`, its result and handler.

Reads the data set (medvlsm's layout or a CSV) through :mod:`napari_vip.io.datasets`, loads a fresh copy of the
model (never the engine's cached one: training changes it), stores the frozen encoder's activations in the
user cache (``$NAPARI_VIP_CACHE/vlsm_activations``) and runs :func:`napari_vip.models.vlsm.finetune.finetune`.
Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process group first (gloo on CPU, nccl on CUDA).
The model spec's ``precision`` (``auto`` resolved on the device; ``auto`` is float32 on CPUs without bf16
instructions) is what the frozen vision encoder runs in; the trained parts and the saved weights stay float32.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import KW_ONLY, asdict, dataclass, field

from ..core.errors import VipInputError
from .engine import handles


@dataclass
class FinetuneRequest:
    """Fine-tune ``model`` on the ``train`` split of ``data``, validated on ``val``.

    Attributes
    ----------
    data : str
        A folder in medvlsm's layout (``images/``, ``masks/``, ``anns/{train,val,test}.json``) or a CSV.
    model : VlsmSpec
        The starting weights (released, a fine-tuned folder, or untrained); its ``precision`` is what the frozen
        vision encoder runs in while training (:func:`napari_vip.models.vlsm.finetune.finetune`).
    out : str
        Output folder (resumed from when it holds this run's ``last.pt``).
    method : str
        ``"vlsm"`` (medvlsm's recipe) or another method module of ``napari_vip.models.vlsm`` (``"cotexnet"``).
    recipe : dict
        Overrides of the method's default recipe (``epochs``, ``batch_size``, ``lr``, ``prompt``, ``train``, ...).
    activations : str or None
        Where the encoder's activations are stored (``None``: the user cache; ``""``: memory only).
    """

    data: str
    model: object
    out: str
    _: KW_ONLY
    method: str = "vlsm"
    recipe: dict = field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    activations: str | None = None
    resume: bool = True
    device: str = "auto"
    #: Options of a method other than ``vlsm`` (CoTexNet: ``keyword``, ``attributes``, ``sentences``, ``llm``,
    #: ``distill_weight``), passed to its module's ``make_method``.
    method_options: dict = field(default_factory=dict)


@dataclass
class FinetuneResult:
    out_dir: str
    method: str
    history: list
    best_epoch: int | None
    best_val_dice: float | None
    stopped: str
    resumed_from: int | None
    n_train: int
    n_val: int
    recipe: dict
    provenance: dict
    activations: dict
    notes: list = field(default_factory=list)

    @property
    def untrained(self) -> bool:
        return False

    def to_dict(self) -> dict:
        return asdict(self)


def method_for(name: str, recipe, model, options: dict | None = None):
    """The :class:`~napari_vip.models.vlsm.finetune.FinetuneMethod` called ``name``: ``"vlsm"``, or the
    ``make_method(recipe, model)`` of module ``napari_vip.models.vlsm.<name>``."""
    from ..models.vlsm.finetune import VlsmMethod

    if name == "vlsm":
        return VlsmMethod(recipe)
    try:
        module = importlib.import_module(f"napari_vip.models.vlsm.{name}")
    except ImportError:
        raise VipInputError(f"Unknown fine-tuning method {name!r}; choose vlsm (or cotexnet where installed).") from None
    return module.make_method(recipe, model, **(options or {}))


def method_recipe(name: str) -> dict:
    """The recipe values a method other than ``vlsm`` defaults to (its module's ``RECIPE_DEFAULTS``)."""
    if name == "vlsm":
        return {}
    try:
        return dict(getattr(importlib.import_module(f"napari_vip.models.vlsm.{name}"), "RECIPE_DEFAULTS", {}))
    except ImportError:
        return {}


def init_distributed(device: str) -> tuple[int, int, str]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1: ``(rank, world_size, device)`` (CUDA: this
    process's ``LOCAL_RANK`` GPU and nccl; else gloo on the CPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return dist.get_rank(), dist.get_world_size(), device


def _items(samples, model, notes):
    from ..io.datasets import load_sample, resize_mask_released
    from ..models.checkpoint import sha256_file
    from ..models.vlsm.finetune import FinetuneItem

    size = (model.input_size, model.input_size)
    items = []
    for s in samples:
        if not s.image_path.is_file():
            raise VipInputError(f"The image {str(s.image_path)!r} of sample {s.sample_id!r} does not exist.")

        def load(s=s):
            rgb, mask = load_sample(s, notes=notes)
            return rgb, resize_mask_released(mask, size)

        items.append(FinetuneItem(s.sample_id, sha256_file(s.image_path), dict(s.prompts), load, s.patient_id))
    return items


def _data_digest(train, val) -> str:
    from ..models.checkpoint import sha256_file

    h = hashlib.sha256()
    for split, samples in (("train", train), ("val", val)):
        for s in sorted(samples, key=lambda s: s.sample_id):
            h.update(f"{split}|{s.sample_id}|{sha256_file(s.image_path)}|{sha256_file(s.mask_path)}|"
                     f"{sorted((k, str(v)) for k, v in s.prompts.items())}".encode())
    return h.hexdigest()


@handles(FinetuneRequest)
def finetune_vlsm(engine, req: FinetuneRequest, progress) -> FinetuneResult:
    from ..io.datasets import open_seg_dataset
    from ..models.device import resolve_device
    from ..models.embedding_cache import cache_root
    from ..models.precision import resolve_precision
    from ..models.vlsm import load_vlsm
    from ..models.vlsm.activation_store import ActivationStore
    from ..models.vlsm.finetune import Recipe, finetune, training_precision

    notes: list[str] = []
    progress(0, 0, f"reading {req.data}")
    train = open_seg_dataset(req.data, req.train_split).samples
    try:
        val = open_seg_dataset(req.data, req.val_split).samples
    except VipInputError as exc:
        if "has no" not in str(exc) and "no samples" not in str(exc):
            raise
        val = []
        notes.append(f"no {req.val_split} split: the training loss and Dice choose the best epoch")
    rank, world, device = init_distributed(resolve_device(req.device))
    progress(0, 0, f"loading {req.model.describe()}")
    precision = resolve_precision(getattr(req.model, "precision", "fp32"), device, "vlsm")
    model = load_vlsm(req.model, device, lambda text: progress(0, 0, text))  # float32: finetune casts the encoder
    recipe = Recipe.released(model.family, **{**method_recipe(req.method), **req.recipe})
    method = method_for(req.method, recipe, model, req.method_options)
    if req.activations == "" or model.sha256 is None:
        store = ActivationStore(None)
        if model.sha256 is None and req.activations != "":
            notes.append("untrained weights: the encoder's activations are kept in memory for this run only")
    else:
        root = req.activations or str(cache_root() / "vlsm_activations")
        store = ActivationStore(root)
    digest = _data_digest(train, val)
    outcome = finetune(model, _items(train, model, notes), _items(val, model, notes), recipe, req.out, method=method,
                       progress=progress, store=store if recipe.store_activations else None, resume=req.resume,
                       data_sha256=digest, provenance={"data": str(req.data), "world_size": world},
                       precision=precision)
    if world > 1 and rank == 0:
        notes.append(f"{world} processes (DistributedDataParallel), global batch {recipe.batch_size}")
    prov = {"model": req.model.to_dict(), "method": method.name, "data_sha256": digest, "world_size": world,
            "precision": training_precision(precision)}
    return FinetuneResult(outcome.out_dir, method.name, outcome.history, outcome.best_epoch, outcome.best_val_dice,
                          outcome.stopped, outcome.resumed_from, len(train), len(val), recipe.to_dict(), prov,
                          outcome.activations, notes)
