"""Dataset evaluation of text-prompted segmentation: Dice and IoU per image, model x prompt type, as medvlsm.

For each model (zero-shot or fine-tuned VLSM, :class:`SegModelEntry`), each sample of the split and each
prompt type (``p0`` ... ``p9``, ``random``), the text is drawn from the sample's prompts as the released data
module draws it (:func:`napari_vip.core.prompt_ladder.choose_prompt`, with a generator seeded by ``seed``, the
sample and the prompt type, so every model sees the same text and a resumed run draws the same), the model
predicts, and Dice and IoU are computed with MONAI's ``compute_dice`` / ``compute_iou`` exactly as the released
``BaseModule.step`` calls them (``include_background=False, ignore_empty=False``: an empty ground truth scores 1
when the prediction is empty too, else 0), on:

- ``resolution="model"`` (default, as the released test metrics): ``sigmoid(logits) > threshold`` at the
  model's input size ``S x S`` against the ground truth resized to ``S x S`` as the released mask transform does
  it (torchvision ``Resize(NEAREST_EXACT)`` on a PIL image, i.e. PIL's ``NEAREST``);
- ``resolution="image"``: the predicted mask resized back to the image (nearest-exact, as the released code
  writes its masks) against the mask as stored.

Means per (model, prompt type) with 95% percentile bootstrap intervals (resampling patients when every sample
has a ``patient_id``; :func:`napari_vip.worker.evaluation_metrics.resample_indices`).  With ``out_dir``, every
finished (sample, prompt type) is appended to ``records/<model>.jsonl`` at once and its predicted mask written
to ``masks/<model>/<prompt>/<sample>.png``, so an interrupted run resumes where it stopped; the files of
:mod:`.outputs` are written at the end.  ``scheduler`` runs the predictions on a
Dask cluster (:mod:`.cluster`).

Precision: each model's ``spec.precision`` (``auto|fp32|bf16|fp16``; ``auto`` resolved on the device, float32 on
CPUs without bf16 instructions) is what its frozen vision tower runs in.  The concrete precision is part of the
model's identity next to its weights' sha256: it is in ``records/<model>.json`` (the records' settings) and
checked against ``records/<model>.provenance.json``, so a bf16 run never reuses records made in fp32.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import __version__
from ...core.errors import VipInputError
from ...core.prompt_ladder import LADDER_KEYS, PROMPT_TYPES
from ..engine import handles
from ..protocol import Provenance
from . import sample as _sample

RESOLUTIONS = ("model", "image")
KINDS = ("zero-shot", "fine-tuned")


@dataclass(frozen=True)
class SegModelEntry:
    """One row of the table.

    Attributes
    ----------
    label : str
        The row's name (unique), e.g. ``clipseg`` or ``clipseg-ft``.
    spec : VlsmSpec
        What :func:`load_seg_model` loads (``napari_vip.models.vlsm.VlsmSpec``).
    kind : str
        ``"zero-shot"`` or ``"fine-tuned"``.
    """

    label: str
    spec: object
    kind: str = "zero-shot"


def concrete_spec(spec, device: str):
    """``spec`` with ``precision="auto"`` replaced by what it means on ``device`` (specs without a precision as
    they are)."""
    if not hasattr(spec, "precision"):
        return spec
    from ...models.precision import concrete_precision

    return concrete_precision(spec, device, "vlsm")


@dataclass
class EvaluateSegRequest:
    """Evaluate VLSMs on a segmentation data set, per prompt type.

    Attributes
    ----------
    data : str
        A medvlsm folder (``images/``, ``masks/``, ``anns/<split>.json``) or a CSV (image, mask, prompt, split
        [, patient_id]).
    models : tuple of SegModelEntry
    prompts : tuple of str
        Prompt types: ``p0`` ... ``p9``, ``random`` or a CSV's ``prompt``.
    split : str or None
        The split evaluated (``None``: every row of a CSV).
    out_dir : str, optional
        Records (resumable), predicted masks, metrics.json, metrics.csv, table.csv, per_image.csv, dice.png.
    resolution : str
        ``"model"`` or ``"image"`` (module docstring).
    bootstrap, seed : int
    device : str
    scheduler : str, optional
        A Dask scheduler address: predict on its workers.
    shards : int
        Shards per model on the cluster (0: four per worker).
    save_masks : bool
    """

    data: str
    models: tuple = ()
    prompts: tuple[str, ...] = LADDER_KEYS
    split: str | None = "test"
    out_dir: str | None = None
    resolution: str = "model"
    bootstrap: int = 1000
    seed: int = 0
    device: str = "auto"
    scheduler: str | None = None
    shards: int = 0
    save_masks: bool = True


@dataclass
class EvaluateSegResult:
    """Dice and IoU per model x prompt type.

    Attributes
    ----------
    models : list of dict
        ``{"label", "kind", "provenance"}`` per row.
    prompts : list of str
    table : dict
        ``{label: {prompt: {"n", "dice", "dice_ci", "iou", "iou_ci"}}}`` (CIs ``[low, high]``).
    per_image : list of dict
        ``{"model", "prompt_type", "sample_id", "patient_id", "text", "dice", "iou", "mask"}``.
    """

    models: list[dict]
    prompts: list[str]
    table: dict
    per_image: list[dict]
    provenance: Provenance
    counts: dict = field(default_factory=dict)
    resumed: int = 0
    files: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def untrained(self) -> bool:
        return any(m["provenance"].get("untrained") for m in self.models)

    def to_dict(self) -> dict:
        return {"models": self.models, "prompts": self.prompts, "table": self.table, "counts": self.counts,
                "resumed": self.resumed, "files": dict(self.files), "notes": list(self.notes),
                "provenance": self.provenance.to_dict(), "untrained": self.untrained}


# ---- records (resume) ------------------------------------------------------------------------------------------

def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


class RecordStore:
    """``records/<model>.jsonl``: one finished (sample, prompt type) per line, appended as it finishes, and
    ``records/<model>.json``: what the records were made with (a different model under the same label is
    refused).  Without a folder it keeps the records in memory."""

    def __init__(self, out_dir, label: str, signature: dict):
        self.records: dict[tuple[str, str], dict] = {}
        self.path = self.mask_dir = None
        if out_dir is None:
            return
        root = Path(out_dir)
        self.path = root / "records" / f"{slug(label)}.jsonl"
        self.mask_dir = root / "masks" / slug(label)
        sig_path = self.path.with_suffix(".json")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if sig_path.is_file():
            old = json.loads(sig_path.read_text())
            if old != signature:
                changed = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
                raise VipInputError(f"{str(root)!r} holds results of model {label!r} made with other settings "
                                    f"({', '.join(changed)}); use a new --out folder or another label.")
        else:
            sig_path.write_text(json.dumps(signature, indent=2))
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption: that pair is done again
                self.records[(r["sample_id"], r["prompt_type"])] = r

    def check_provenance(self, provenance: dict, label: str) -> dict:
        """Keep the loaded model's provenance with the records (``records/<model>.provenance.json``); weights of
        another sha256, or another precision (records without one were made in fp32), than those that made the
        records are refused."""
        if self.path is None:
            return provenance
        path = self.path.with_suffix(".provenance.json")
        if path.is_file() and self.records:
            stored = json.loads(path.read_text())
            old = stored.get("weights_sha256")
            if old != provenance.get("weights_sha256"):
                raise VipInputError(f"The weights of model {label!r} changed since its records in "
                                    f"{str(self.path.parent.parent)!r} were made (sha256 {old} -> "
                                    f"{provenance.get('weights_sha256')}); use a new --out folder.")
            was, now = stored.get("precision", "fp32"), provenance.get("precision", "fp32")
            if was != now:
                raise VipInputError(f"The records of model {label!r} in {str(self.path.parent.parent)!r} were made "
                                    f"in {was}, this run is in {now}; use a new --out folder or another label.")
        path.write_text(json.dumps(provenance, indent=2, default=str))
        return provenance

    def stored_provenance(self) -> dict | None:
        """The provenance kept with the records, when every pair was resumed and no model was loaded."""
        path = None if self.path is None else self.path.with_suffix(".provenance.json")
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    def done(self, sample_id: str, prompt_type: str) -> bool:
        return (sample_id, prompt_type) in self.records

    def add(self, record: dict, mask: np.ndarray | None) -> None:
        if self.mask_dir is not None and mask is not None:
            from ...io.datasets import write_mask_png

            rel = Path(slug(record["prompt_type"])) / (Path(slug(record["sample_id"])).stem + ".png")
            write_mask_png(mask, self.mask_dir / rel)
            record = {**record, "mask": str(Path("masks") / self.mask_dir.name / rel)}
        self.records[(record["sample_id"], record["prompt_type"])] = record
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()


# ---- the table -------------------------------------------------------------------------------------------------

def _interval(values) -> list | None:
    v = np.asarray(values, dtype=np.float64)
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None


def summarise(dice, iou, groups, n_boot: int, seed: int) -> dict:
    """Means of per-image ``dice`` and ``iou`` with 95% bootstrap intervals (``groups``: patient per image)."""
    from ..evaluation_metrics import resample_indices

    d, j = np.asarray(dice, np.float64), np.asarray(iou, np.float64)
    draws = resample_indices(len(d), groups, n_boot, seed) if n_boot > 0 and len(d) else []
    return {"n": int(len(d)), "dice": float(d.mean()) if len(d) else None,
            "dice_ci": _interval([d[idx].mean() for idx in draws]),
            "iou": float(j.mean()) if len(j) else None, "iou_ci": _interval([j[idx].mean() for idx in draws])}


def check_prompt_types(samples, prompt_types) -> None:
    """Every sample has every requested prompt type (``random`` needs two prompts)."""
    for pt in prompt_types:
        if pt == "random":
            continue
        lacking = [s.sample_id for s in samples if pt not in s.prompts]
        if lacking:
            have = sorted({k for s in samples for k in s.prompts}, key=lambda k: (len(k), k))
            raise VipInputError(f"Prompt type {pt!r} is missing for {len(lacking)} sample(s) (e.g. {lacking[0]!r}); "
                                f"the data's prompt types: {', '.join(have)}.")


def parse_entries(models) -> tuple:
    out, labels = [], set()
    for m in models:
        if not isinstance(m, SegModelEntry):
            raise VipInputError(f"Models are SegModelEntry(label, spec, kind), got {type(m).__name__}.")
        if m.kind not in KINDS:
            raise VipInputError(f"Model {m.label!r}: kind must be one of {', '.join(KINDS)}.")
        if m.label in labels:
            raise VipInputError(f"Two models are labelled {m.label!r}; give each row its own label (LABEL=...).")
        labels.add(m.label)
        out.append(m)
    if not out:
        raise VipInputError("Give at least one model to evaluate (--models).")
    return tuple(out)


def _spec_dict(spec) -> dict:
    return spec.to_dict() if hasattr(spec, "to_dict") else {"spec": repr(spec)}


@handles(EvaluateSegRequest)
def evaluate_seg(engine, req: EvaluateSegRequest, progress) -> EvaluateSegResult:
    from ...io.datasets import open_seg_dataset

    if req.resolution not in RESOLUTIONS:
        raise VipInputError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {req.resolution!r}.")
    bad = [p for p in req.prompts if p not in PROMPT_TYPES and p != "prompt"]
    if bad or not req.prompts:
        raise VipInputError(f"Unknown prompt type(s) {bad or '(none)'}; choose from {', '.join(PROMPT_TYPES)} "
                            "(or 'prompt' for a CSV's prompt column).")
    models = parse_entries(req.models)
    progress(0, 0, "reading the data")
    data = open_seg_dataset(req.data, req.split)
    samples = data.samples
    check_prompt_types(samples, req.prompts)
    prompt_types = list(dict.fromkeys(req.prompts))
    total = len(models) * len(samples)
    done_units, resumed, model_rows = 0, 0, []
    stores = {}
    from ...models.device import resolve_device

    device = resolve_device(req.device)
    models = tuple(SegModelEntry(m.label, concrete_spec(m.spec, device), m.kind) for m in models)
    for entry in models:  # the spec's concrete precision is in the signature: fp32 and bf16 records never mix
        signature = {"model": _spec_dict(entry.spec), "kind": entry.kind, "data": str(Path(req.data).resolve()),
                     "split": req.split, "resolution": req.resolution, "seed": req.seed}
        store = RecordStore(req.out_dir, entry.label, signature)
        stores[entry.label] = store
        todo = {s.sample_id: [pt for pt in prompt_types if not store.done(s.sample_id, pt)] for s in samples}
        resumed += sum(len(prompt_types) - len(v) for v in todo.values())
        pending = [s for s in samples if todo[s.sample_id]]
        done_units += len(samples) - len(pending)
        progress(done_units, total, f"loading {entry.label}")
        prov = None
        if pending and req.scheduler:
            from .cluster import evaluate_on_cluster

            prov = evaluate_on_cluster(req, entry, pending, todo, store, device,
                                       lambda n, text, base=done_units: progress(base + n, total, text),
                                       lambda p, e=entry, st=store: st.check_provenance(p, e.label))
            done_units += len(pending)
        elif pending:
            model = engine.model(("vlsm", entry.spec, device), lambda e=entry: _sample.load_seg_model(e.spec, device))
            prov = store.check_provenance(model.provenance() if hasattr(model, "provenance") else {}, entry.label)
            for s in pending:
                for rec, mask in _sample.evaluate_sample(model, s, todo[s.sample_id], req.seed, req.resolution):
                    store.add(rec, mask if req.save_masks else None)
                done_units += 1
                progress(done_units, total, f"{entry.label}: {s.sample_id}")
        if prov is None:  # every pair was resumed: no model loaded
            prov = store.stored_provenance() or {"model": _spec_dict(entry.spec)}
        model_rows.append({"label": entry.label, "kind": entry.kind, "provenance": prov})

    progress(total, total, "computing metrics")
    groups = [s.patient_id for s in samples] if all(s.patient_id for s in samples) else None
    table, per_image = {}, []
    for entry in models:
        store = stores[entry.label]
        table[entry.label] = {}
        for pt in prompt_types:
            recs = [store.records[(s.sample_id, pt)] for s in samples]
            per_image += [{"model": entry.label, **r} for r in recs]
            table[entry.label][pt] = summarise([r["dice"] for r in recs], [r["iou"] for r in recs], groups,
                                               req.bootstrap, req.seed)
    extra = {"dataset": data.source, "layout": data.layout, "split": req.split, "resolution": req.resolution,
             "metric": "monai compute_dice / compute_iou (include_background=False, ignore_empty=False)",
             "bootstrap": {"n": req.bootstrap, "seed": req.seed, "unit": "patient" if groups else "sample"},
             "prompt_seed": req.seed, "scheduler": req.scheduler,
             "model_precision": {m.label: getattr(m.spec, "precision", "fp32") for m in models}}
    result = EvaluateSegResult(
        model_rows, prompt_types, table, per_image,
        Provenance(__version__, untrained=any(m["provenance"].get("untrained") for m in model_rows),
                   device=device, extra=extra),
        {"samples": len(samples), "models": len(models), "prompt_types": len(prompt_types),
         "predictions": len(samples) * len(prompt_types) * len(models)}, resumed)
    if req.out_dir:
        from .outputs import write_seg_outputs

        result.files = write_seg_outputs(result, req.out_dir)
    return result
