"""Prompt learning (ViP, CoOp) as a worker job, and class scores from a learned-prompts file.

:class:`LearnRequest` trains on labelled images and saves the learned prompts; progress is reported
once per batch (for cancellation) and once per epoch with the epoch's record as the message's data
(``data["epoch"]``: ``method``, ``epoch``, ``epochs``, ``loss``, ``acc``, ``val_loss``, ``val_acc``), so a GUI
plots training live from the ordinary progress messages.

:func:`learned_class_features` is what classification uses when a request names a prompts file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import __version__
from ..core.errors import VipInputError
from ..core.recipes import recipe_provenance
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
    evaluation: dict  # row name -> metrics (classification_metrics)
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


@handles(LearnRequest)
def learn(engine, req: LearnRequest, progress) -> LearnResult:
    from ..core.datasets import load_labelled
    from ..models.training import TrainConfig, run_learning

    progress(0, 0, "reading labelled images")
    data = load_labelled(req.data, req.classes)
    notes = [f"data: {line}" for line in data.report.lines()]
    config = TrainConfig(**{**req.config, "method": req.method})
    descriptors = descriptors_of(req)
    if req.method == "vip" and not descriptors:
        raise VipInputError("ViP needs a descriptor library (--descriptors LIBRARY.json, or the dock's "
                            "library field); use method coop to learn from class names alone.")
    methods = [req.method] + ([m for m in ("coop", "vip") if m != req.method] if req.compare else [])
    if req.compare and not descriptors:
        methods = [m for m in methods if m != "vip"]
        notes.append("comparison without ViP: no descriptor library given")
    progress(0, 0, "loading model")
    clip = engine.clip(req.model, req.device, progress)
    run = run_learning(clip, data, descriptors, config, methods, req.template, req.modality, progress)
    out = None
    if req.out:
        out = run.prompts[req.method].save(req.out)
    if clip.untrained:
        notes.append("untrained CLIP (random weights): the learned prompts only show the workflow")
    prov = Provenance(__version__, **clip.provenance(),
                      extra={"method": req.method, "descriptors": run.prompts[req.method].descriptors})
    return LearnResult(req.method, out, data.classes, run.evaluation,
                       {m: [r.to_dict() for r in h] for m, h in run.histories.items()}, run.split,
                       {"source": data.source, "counts": data.counts(), "report": data.report.to_dict()},
                       config.to_dict(), prov, run.seconds, notes)


def learned_class_features(engine, clip, prompts_path: str):
    """``(prompts, features)``: the :class:`~napari_vip.models.training.LearnedPrompts` in ``prompts_path``
    and its ``(C, D)`` normalised class embeddings for ``clip`` (cached per file version and model).

    Raises VipInputError when the file was learned with another CLIP model.
    """
    import os

    from ..models.training import LearnedPrompts

    try:
        st = os.stat(prompts_path)
    except OSError:
        raise VipInputError(f"Learned prompts file {prompts_path!r} does not exist.") from None
    key = ("learned-prompts", os.path.abspath(prompts_path), st.st_mtime_ns, st.st_size, clip.spec, clip.device,
           clip.sha256, id(clip))

    def build():
        prompts = LearnedPrompts.load(prompts_path)
        return prompts, prompts.class_features(clip)

    return engine.model(key, build)


@dataclass
class ScoreWithPromptsRequest:
    """Class probabilities of plain images from learned prompts (no markers).

    ``images_rgb``: list of ``(H, W, 3)`` uint8 images.
    """

    images_rgb: list
    prompts_path: str
    model: ModelSpec
    device: str = "auto"


@dataclass
class ScoreWithPromptsResult:
    classes: list[str]
    probabilities: object  # (N, C) float64
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "probabilities": self.probabilities.tolist(),
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


@handles(ScoreWithPromptsRequest)
def score_with_prompts(engine, req: ScoreWithPromptsRequest, progress) -> ScoreWithPromptsResult:
    progress(0, 2, "loading model")
    clip = engine.clip(req.model, req.device, progress)
    prompts, feats = learned_class_features(engine, clip, req.prompts_path)
    progress(1, 2, "encoding images")
    probs = clip.probabilities(clip.encode_images(list(req.images_rgb)), feats)
    progress(2, 2, "done")
    prov = Provenance(__version__, **clip.provenance(), extra={"learned_prompts": {
        "path": req.prompts_path, **prompts.summary()}})
    return ScoreWithPromptsResult(list(prompts.classes), probs, prov, prompts.check_model(clip))


def classify_with_prompts(engine, req, progress):
    """Serve a :class:`~napari_vip.worker.classify.ClassifyRequest` whose ``prompts_path`` is set.

    Markers are rendered as usual; every condition is scored against the learned class embeddings
    (the classes are the file's; ``req.classes``, template and marker text do not apply).
    """
    from .classify import ClassifyResult, ConditionResult, embedded_conditions

    clip = engine.clip(req.model, req.device, progress)  # a mismatched prompts file is refused before any work
    prompts, feats = learned_class_features(engine, clip, req.prompts_path)
    notes = prompts.check_model(clip)
    given = [c.strip() for c in (req.classes or []) if str(c).strip()]
    if given and [c.casefold() for c in given] != [c.casefold() for c in prompts.classes]:
        notes.append(f"classes come from the learned prompts ({', '.join(prompts.classes)}), not from the "
                     f"request ({', '.join(given)})")
    clip, conditions, img, total = embedded_conditions(engine, req, progress)  # the model is cached by now
    probs = clip.probabilities(img, feats)
    label = [f"learned {prompts.method} prompt: {c}" for c in prompts.classes]
    results = [ConditionResult(name, marker, list(label), probs[k]) for k, (name, marker) in enumerate(conditions)]
    progress(total, total, "done")
    prov = Provenance(__version__, **clip.provenance(), extra={"learned_prompts": {
        "path": req.prompts_path, **prompts.summary()}, **recipe_provenance(req.recipe)})
    return ClassifyResult(list(prompts.classes), results, prov, notes)
