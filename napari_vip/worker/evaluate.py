"""Dataset evaluation: every (sample, condition) rendered and embedded once, zero-shot probabilities per
condition, the released code's metrics with bootstrap intervals and paired differences to ``none``.

The request and result are the contract shared by the CLI, the dock and the Dask runner
(:mod:`napari_vip.worker.dask_runner`).  Rendering (file hashing, decoding, drawing) runs in a thread pool
ahead of the model, which embeds batches of ``batch_size`` renders; embeddings go to an
:class:`~napari_vip.worker.embedding_store.EmbeddingStore` as each batch finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .. import __version__
from ..core.errors import VipInputError
from ..core.eval_conditions import PAPER_CONDITIONS, Condition, parse_conditions
from ..core.prompts import DEFAULT_MODALITY, build_prompt, check_template
from ..core.recipes import check_recipe, recipe_provenance
from ..models.spec import ModelSpec
from .embedding_store import EmbeddingStore
from .engine import handles
from .evaluation_embedding import embed_samples
from .evaluation_metrics import bootstrap, class_report, delong_test, expected_calibration_error, released_metrics
from .evaluation_outputs import RenderWriter
from .protocol import Provenance


@dataclass
class EvaluateRequest:
    """Evaluate a model on labelled data under several conditions.

    Attributes
    ----------
    data : str
        The project's CSV, a folder of class folders, or a public metadata file (``layout``, ``images``).
    conditions : sequence of str
        Names from :data:`napari_vip.core.eval_conditions.CONDITIONS`; ``none`` is added when missing.
    out_dir : str, optional
        Where predictions.csv, metrics.json, metrics.csv and auroc.png go; the embedding store defaults to
        ``out_dir/embeddings``.
    bootstrap, seed : int
        Resamples (by ``patient_id`` when the data give it) and their seed.
    batch_size, threads : int
        Renders per model call; threads decoding and rendering ahead of the model.
    scheduler : str, optional
        A Dask scheduler address: embed on that cluster instead of in this process.
    template : str, optional
        Prompt template (``{c}``, ``{suffix}``, ``{modality}``); ``None``: the layout's own
        (:func:`napari_vip.io.eval_adapters.layout_template`: JSRT's, else the default).
    save_renders : str, optional
        A folder for every (sample, condition) image the model receives, as PNG
        (:class:`~napari_vip.worker.evaluation_outputs.RenderWriter`), with ``renders.csv``.
    released_quirks : bool
        Reproduce the released code where napari-vip differs on purpose: the VinDr-CXR / NIH14 crop around a
        box scaled with the image's axes swapped, and AUROC, AUPRC and MCC all ``None`` when a class has no
        samples.  Recorded in the provenance.
    """

    data: str
    model: ModelSpec
    conditions: tuple[str, ...] = PAPER_CONDITIONS
    out_dir: str | None = None
    layout: str | None = None
    images: str | None = None
    metadata: str | None = None
    classes: list[str] | None = None
    recipe: str = "paper"
    color: str = "red"
    line_width: int = 1
    text_style: str = "circle"
    template: str | None = None
    modality: str = DEFAULT_MODALITY
    bootstrap: int = 1000
    seed: int = 0
    batch_size: int = 32
    threads: int = 4
    device: str = "auto"
    store: str | None = None
    scheduler: str | None = None
    shards: int = 0
    save_renders: str | None = None
    released_quirks: bool = False


@dataclass
class EvaluateResult:
    """Per-sample probabilities and metrics per condition.

    Attributes
    ----------
    classes : list of str
    conditions : list of Condition
    samples : list of EvalSample
        The evaluated ones, in order; rows of every ``probabilities`` array.
    labels : np.ndarray
        ``(N,)`` int64 class index.
    probabilities : dict
        Condition name -> ``(N, C)`` float64.
    metrics : dict
        Condition name -> released metrics, ``per_class``, ``ece``, ``ci``, ``difference``,
        ``difference_ci`` and ``delong`` (the last three against ``none``).
    """

    classes: list[str]
    conditions: list[Condition]
    samples: list
    labels: np.ndarray
    probabilities: dict
    metrics: dict
    prompts: dict
    provenance: Provenance
    skipped: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    embedded: int = 0
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "conditions": [c.to_dict() for c in self.conditions],
                "metrics": self.metrics, "prompts": self.prompts, "counts": self.counts,
                "skipped": list(self.skipped), "embedded": self.embedded, "files": dict(self.files),
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained}


def weights_id(clip) -> str:
    """What identifies the weights in embedding keys: their sha256, else the spec (untrained: not stored); with
    the precision the tower ran in when it is not float32 (``SHA256:bf16``), so a float32 and a bfloat16
    embedding of one render never share a key."""
    base = clip.sha256 or repr(clip.spec)
    precision = getattr(clip, "precision", "fp32")
    return base if precision == "fp32" else f"{base}:{precision}"


def _probabilities(clip, features: np.ndarray, prompts: list[str]) -> np.ndarray:
    import torch

    img = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(clip.device)
    return clip.probabilities(img, clip.encode_texts(prompts))


def condition_metrics(labels, probabilities: dict, classes, reference: str, groups, n_boot: int, seed: int,
                      released_quirks: bool = False) -> dict:
    """Every number of part *metrics* per condition (see :class:`EvaluateResult`)."""
    out = {}
    boot = bootstrap(labels, probabilities, reference, groups, n_boot, seed, released_quirks)
    ref = released_metrics(labels, probabilities[reference], released_quirks)
    for name, p in probabilities.items():
        m = released_metrics(labels, p, released_quirks)
        m["ece"] = expected_calibration_error(labels, p)
        m["per_class"] = class_report(labels, p, classes)
        m["ci"] = boot[name]["ci"]
        if name != reference:
            m["difference"] = {k: None if m[k] is None or ref[k] is None else m[k] - ref[k] for k in ref}
            m["difference_ci"] = boot[name]["difference_ci"]
            m["delong"] = delong_test(labels, p, probabilities[reference])
        out[name] = m
    out["_bootstrap"] = boot["_resamples"]
    return out


@handles(EvaluateRequest)
def evaluate(engine, req: EvaluateRequest, progress) -> EvaluateResult:
    from ..io.eval_adapters import SWAPPED_CROP_LAYOUTS, layout_template
    from ..io.eval_loading import load_eval_data

    check_recipe(req.recipe)
    if req.template is not None:
        check_template(req.template)
    conditions = parse_conditions(req.conditions, req.color, req.line_width, req.text_style)
    progress(0, 0, "reading the data")
    data = load_eval_data(req.data, req.classes, req.layout, req.images, req.metadata)
    template = req.template if req.template is not None else layout_template(data.layout)
    if req.released_quirks and data.layout in SWAPPED_CROP_LAYOUTS:
        data.samples = [replace(sm, released_crop=True) for sm in data.samples]
    if not data.has_boxes and any(c.needs_box for c in conditions):
        raise VipInputError(
            f"{data.source!r} has no boxes, so marker conditions "
            f"({', '.join(c.name for c in conditions if c.needs_box)}) cannot be drawn; use a CSV with "
            "x0,y0,x1,y1 columns, or only the conditions none and text-only.")
    progress(0, 0, "loading model")
    clip = engine.clip(req.model, req.device, progress)
    weights = weights_id(clip)
    root = req.store or (f"{req.out_dir}/embeddings" if req.out_dir else None)
    from pathlib import Path

    store = EmbeddingStore(Path(root) / weights[:16] if root and clip.sha256 else None)
    renders = RenderWriter(req.save_renders, data.samples, conditions) if req.save_renders else None
    if req.scheduler:
        import dataclasses

        from .dask_runner import embed_on_cluster

        # the workers load the precision this process resolved, which the keys name
        keys, errors, embedded = embed_on_cluster(dataclasses.replace(req, model=clip.spec), data.samples, conditions,
                                                  weights, store, progress)
        if renders is not None:  # the workers' files may not be ours: render here
            embed_samples(None, data.samples, conditions, req.recipe, weights, set(), threads=req.threads,
                          progress=progress, on_render=renders)
    else:
        keys, errors, embedded = embed_samples(
            lambda ims: clip.encode_images(ims).cpu().numpy(), data.samples, conditions, req.recipe, weights,
            store.keys(), on_batch=store.add, batch_size=req.batch_size, threads=req.threads, progress=progress,
            on_render=renders)
    skipped = list(data.skipped) + [{"path": data.samples[i].path, "reason": r} for i, r in sorted(errors.items())]
    ok = [i for i, k in enumerate(keys) if k is not None]
    samples = [data.samples[i] for i in ok]
    labels = np.asarray([data.classes.index(s.label) for s in samples], dtype=np.int64)
    if len({int(v) for v in labels}) < 2:
        raise VipInputError(f"Only {len(samples)} sample(s) of {len(set(labels.tolist()))} class(es) could be "
                            f"evaluated; skipped: {skipped[:5]}.")
    probabilities, prompts = {}, {}
    for c in conditions:
        prompts[c.name] = [build_prompt(k, c.suffix(), template, req.modality) for k in data.classes]
    clip.encode_texts([p for c in conditions for p in prompts[c.name]])  # one text-tower call for every condition
    for c in conditions:
        feats = np.stack([store.get(keys[i][c.render_key()]) for i in ok])
        probabilities[c.name] = _probabilities(clip, feats, prompts[c.name])
    progress(0, 0, "computing metrics")
    groups = [s.patient_id for s in samples] if all(s.patient_id for s in samples) else None
    metrics = condition_metrics(labels, probabilities, data.classes, "none", groups, req.bootstrap, req.seed,
                                req.released_quirks)
    extra = {**recipe_provenance(req.recipe), "released_quirks": bool(req.released_quirks),
             "dataset": data.source, "dataset_sha256": data.source_sha256,
             "layout": data.layout, "template": template, "modality": req.modality,
             "scheduler": req.scheduler}
    result = EvaluateResult(
        data.classes, conditions, samples, labels, probabilities, metrics, prompts,
        Provenance(__version__, extra=extra, **clip.provenance()), skipped,
        {"samples": len(data.samples) + len(data.skipped), "evaluated": len(samples), "skipped": len(skipped),
         "per_class": {k: int((labels == j).sum()) for j, k in enumerate(data.classes)}}, embedded)
    if renders is not None:
        result.files["renders"] = renders.write_index(conditions)
    if req.out_dir:
        from .evaluation_outputs import write_outputs

        result.files = {**write_outputs(result, req.out_dir), **result.files}
    return result
