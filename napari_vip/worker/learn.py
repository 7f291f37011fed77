"""Prompt learning (ViP, CoOp) as a worker job.

:class:`LearnRequest` trains on labelled images and saves the learned prompts; progress is reported
once per batch (for cancellation) and once per epoch with the epoch's record as the message's data
(``data["epoch"]``: ``method``, ``epoch``, ``epochs``, ``loss``, ``acc``, ``val_loss``, ``val_acc``), so a GUI
plots training live from the ordinary progress messages.

Classification with a learned-prompts file is a :class:`~napari_vip.worker.classify.ClassifyRequest` with
``prompts_path`` set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from ..core.errors import VipInputError
from ..models.spec import ModelSpec
from .engine import handles
from .protocol import Provenance


@dataclass
class LearnRequest:
    """Train prompts on labelled images.

    Attributes
    ----------
    data : str
        A folder with one sub-folder of images per class, or a CSV of ``path,label[,x0,y0,x1,y1]``.
    model : ModelSpec
    out : str or None
        Where to save the learned prompts (``.pt``) of ``method``; not saved when ``None``.
    method : {"vip", "coop"}
    compare : bool
        Also train the other method on the same split, for the comparison table.
    descriptors : dict or None
        ``{class: [descriptor, ...]}``; ``descriptors_path`` (a library JSON) is read when this is ``None``.
    descriptors_path : str or None
        A symptom library file (:func:`napari_vip.core.symptoms.load_library`); ``""`` means the
        bundled + user library.
    preset : {"project", "released"}
        The training recipe (:data:`~napari_vip.models.training.PRESETS`) that ``config`` changes: ``project``
        for small data sets, ``released`` for the released ViP configs' recipe.
    config : dict
        :class:`~napari_vip.models.training.TrainConfig` fields to override (epochs, lr, batch_size...).
    template, modality : str or None
        Class-name prompt of the zero-shot baseline (see :mod:`napari_vip.core.prompts`).
    """

    data: str
    model: ModelSpec
    out: str | None = None
    method: str = "vip"
    compare: bool = False
    descriptors: dict | None = None
    descriptors_path: str | None = None
    config: dict = field(default_factory=dict)
    preset: str = "project"
    classes: list[str] | None = None
    template: str | None = None
    modality: str | None = None
    device: str = "auto"


@dataclass
class LearnResult:
    """Learned prompts, the training history and the zero-shot/CoOp/ViP comparison on one split."""

    method: str
    out: str | None
    classes: list[str]
    evaluation: dict  # row name -> metrics (napari_vip.core.metrics.classification_metrics)
    histories: dict  # method -> list of epoch dicts
    split: dict
    dataset: dict  # counts, report
    config: dict
    provenance: Provenance
    seconds: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"method": self.method, "out": self.out, "classes": list(self.classes),
                "evaluation": self.evaluation, "histories": self.histories, "split": self.split,
                "dataset": self.dataset, "config": self.config, "seconds": self.seconds,
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}

    def table(self) -> str:
        """The comparison as a fixed-width text table."""
        return evaluation_table(self.evaluation)


def evaluation_table(evaluation: dict) -> str:
    """``method | accuracy | balanced acc. | macro AUROC`` rows, then a per-class block per method."""
    rows = [("method", "accuracy", "balanced acc.", "macro AUROC")]
    for name, m in evaluation.items():
        rows.append((name, f"{m['accuracy']:.3f}", f"{m['balanced_accuracy']:.3f}", f"{m['auroc_macro']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for name, m in evaluation.items():
        lines.append(f"\n{name}, per class (n={m['n']}):")
        cw = max(len(c) for c in m["per_class"])
        lines.append(f"  {'class':<{cw}}  precision  recall     f1  AUROC  support")
        for c, r in m["per_class"].items():
            lines.append(f"  {c:<{cw}}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['f1']:5.3f}  "
                         f"{r['auroc']:5.3f}  {r['support']:7d}")
    return "\n".join(lines)


def descriptors_of(req: LearnRequest):
    if req.descriptors is not None:
        return req.descriptors
    if req.descriptors_path is None:
        return None
    from ..core.symptoms import load_library

    return load_library(req.descriptors_path or None)


def training_spec(spec: ModelSpec, config, device: str) -> ModelSpec:
    """The model ``spec`` to train with: ``config.half_precision`` (the released recipe) turns an ``auto`` precision
    into float16 where the device is a CUDA GPU (the released code's ``PREC fp16``) and float32 elsewhere."""
    from dataclasses import replace

    from ..models.device import resolve_device

    if not config.half_precision or getattr(spec, "precision", None) != "auto":
        return spec
    return replace(spec, precision="fp16" if resolve_device(device).startswith("cuda") else "fp32")


@handles(LearnRequest)
def learn(engine, req: LearnRequest, progress) -> LearnResult:
    from ..core.datasets import load_labelled
    from ..models.training import TrainConfig, run_learning

    progress(0, 0, "reading labelled images")
    data = load_labelled(req.data, req.classes)
    notes = [f"data: {line}" for line in data.report.lines()]
    config = TrainConfig.from_preset(req.preset, **{**req.config, "method": req.method})
    descriptors = descriptors_of(req)
    if req.method == "vip" and not descriptors:
        raise VipInputError("ViP needs a descriptor library (--descriptors LIBRARY.json, or the dock's "
                            "library field); use method coop to learn from class names alone.")
    methods = [req.method] + ([m for m in ("coop", "vip") if m != req.method] if req.compare else [])
    if req.compare and not descriptors:
        methods = [m for m in methods if m != "vip"]
        notes.append("comparison without ViP: no descriptor library given")
    progress(0, 0, "loading model")
    clip = engine.clip(training_spec(req.model, config, req.device), req.device, progress)
    run = run_learning(clip, data, descriptors, config, methods, req.template, req.modality, progress)
    out = None
    if req.out:
        out = run.prompts[req.method].save(req.out)
    if clip.untrained:
        notes.append("untrained CLIP (random weights): the learned prompts only show the workflow")
    if config.half_precision and getattr(clip, "precision", "fp32") != "fp16":
        notes.append(f"the released recipe runs CLIP in float16 on a GPU; here it ran in "
                     f"{getattr(clip, 'precision', 'fp32')} on {clip.device}")
    prov = Provenance(__version__, **clip.provenance(),
                      extra={"method": req.method, "descriptors": run.prompts[req.method].descriptors,
                             "preset": config.preset, "preset_overrides": config.overrides()})
    return LearnResult(req.method, out, data.classes, run.evaluation,
                       {m: [r.to_dict() for r in h] for m, h in run.histories.items()}, run.split,
                       {"source": data.source, "counts": data.counts(), "report": data.report.to_dict()},
                       config.to_dict(), prov, run.seconds, notes)
