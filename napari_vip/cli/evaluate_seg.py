"""Segmentation data sets and their evaluation on the command line.

- ``napari-vip evaluate-seg DATA --models clipseg:CIDAS/clipseg-rd64-refined ft=runs/ft1 --prompts p0 ... p9
  --out DIR [--split test] [--precision auto|fp32|bf16|fp16] [--scheduler ADDRESS] --json``: Dice and IoU per image (MONAI), a row per model and
  a column per prompt type with bootstrap intervals (:mod:`napari_vip.worker.segmentation_eval`);
- ``napari-vip seg-data check DATA --split test``: read a medvlsm folder or CSV and check every sample;
- ``napari-vip seg-data export (--images DIR --masks DIR | --csv FILE) --class polyp --out DIR``: write a
  user's images and masks in medvlsm's layout with the prompt ladder (:mod:`napari_vip.io.datasets.export`).
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import emit, stderr_progress


def add_parser(sub) -> None:
    from ..core.prompt_ladder import LADDER_KEYS

    p = sub.add_parser("evaluate-seg", help="Dice/IoU of text-prompted segmentation models per prompt type")
    p.add_argument("data", help="medvlsm folder (images/, masks/, anns/SPLIT.json) or CSV of image,mask,prompt,split"
                                "[,patient_id]")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="each [LABEL=]FAMILY:SOURCE (a Hugging Face folder, hub id or .safetensors), "
                        "[LABEL=]FAMILY:untrained, or [LABEL=]DIR written by `napari-vip finetune` (a fine-tuned row)")
    p.add_argument("--prompts", nargs="+", default=list(LADDER_KEYS), metavar="TYPE",
                   help="prompt types: p0 ... p9, random, or prompt (a CSV's prompt column); default p0 ... p9")
    p.add_argument("--split", default="test", help="split to evaluate (default test; 'all' = every CSV row)")
    p.add_argument("--resolution", default="model", choices=("model", "image"),
                   help="score at the model's input size as the released code (default) or at the image's")
    p.add_argument("--vlsm-config", default=None,
                   help="architecture JSON for FAMILY:untrained models and FAMILY:FILE.safetensors")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% CIs (by patient_id if given)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the prompts drawn from lists")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="what every model's vision tower runs in (auto: bf16 on CPUs with AMX/AVX-512-BF16 and on "
                        "GPUs that run it, fp16 on older GPUs, else fp32); part of the records' identity, so a run "
                        "in another precision needs its own --out (docs/precision.md)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://host:8786): predict on its workers")
    p.add_argument("--shards", type=int, default=0, help="shards per model on the cluster (default 4 per worker)")
    p.add_argument("--no-masks", action="store_true", help="do not write the predicted masks")
    p.add_argument("--out", required=True, help="folder for records/, masks/, metrics.json/csv, table.csv, dice.png "
                                                "(run again with the same --out to resume)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)

    d = sub.add_parser("seg-data", help="check a segmentation data set, or export images and masks in medvlsm's "
                                        "layout with the prompt ladder")
    dsub = d.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = dsub.add_parser("check", help="read a medvlsm folder or CSV and check every image and mask")
    c.add_argument("data")
    c.add_argument("--split", default="test", help="split ('all' = every CSV row)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=run_check)
    e = dsub.add_parser("export", help="write images and masks in medvlsm's layout with the prompt ladder")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (masks matched by file stem, NAME.* or NAME_mask.*)")
    src.add_argument("--csv", help="CSV of image,mask[,prompt][,split] (its split column decides the files)")
    e.add_argument("--masks", help="folder of masks (with --images)")
    e.add_argument("--class", dest="class_name", required=True, help="what the masks show (p1 of the ladder)")
    e.add_argument("--definition", action="append", default=None, metavar="TEXT",
                   help="definition for p7-p9 (repeat; default: released definitions, else the symptom library)")
    e.add_argument("--definitions", default=None, metavar="FILE", help="symptom-library JSON with the class")
    e.add_argument("--fractions", nargs=3, type=float, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                   help="random split of --images pairs (default 0.8 0.1 0.1)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-ladder", action="store_true", help="keep the CSV's own prompts instead of the ladder")
    e.add_argument("--out", required=True, help="new folder for images/, masks/, anns/")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=run_export)


def parse_model(text: str, vlsm_config: str | None = None, precision: str = "auto"):
    """``[LABEL=]FAMILY:SOURCE``, ``[LABEL=]FAMILY:untrained`` or ``[LABEL=]DIR`` -> ``SegModelEntry`` (its
    spec in ``precision``)."""
    from ..core.errors import VipInputError
    from ..models.vlsm import VlsmSpec
    from ..models.vlsm.spec import FAMILIES, source_kind
    from ..worker.segmentation_eval import SegModelEntry

    label, sep, rest = text.partition("=")
    if not sep:
        label, rest = "", text
    family, colon, source = rest.partition(":")
    if colon and family in FAMILIES:
        if source == "untrained":
            spec = VlsmSpec(family, None, untrained=True, config=vlsm_config, precision=precision)
        else:  # the architecture config names a bare safetensors file's architecture; folders carry their own
            spec = VlsmSpec(family, source, config=vlsm_config if source.lower().endswith(".safetensors") else None,
                            precision=precision)
        kind = "fine-tuned" if source != "untrained" and source_kind(source) == "finetuned" else "zero-shot"
        return SegModelEntry(label or family, spec, kind)
    folder = Path(rest).expanduser()
    if folder.is_dir() and (folder / "config.json").is_file():
        cfg = json.loads((folder / "config.json").read_text())
        family = cfg.get("family") or (cfg.get("napari_vip") or {}).get("family")
        if family not in FAMILIES:
            raise VipInputError(f"{str(folder)!r}: config.json names no VLSM family ({', '.join(FAMILIES)}); "
                                "give FAMILY:SOURCE instead.")
        kind = "fine-tuned" if source_kind(str(folder)) == "finetuned" else "zero-shot"
        return SegModelEntry(label or folder.name, VlsmSpec(family, str(folder), precision=precision), kind)
    raise VipInputError(f"Model {text!r}: give [LABEL=]FAMILY:SOURCE ({', '.join(FAMILIES)}; SOURCE a Hugging Face "
                        "folder, hub id, .safetensors file or 'untrained') or [LABEL=]DIR written by "
                        "`napari-vip finetune`.")


def run(args) -> int:
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.segmentation_eval import EvaluateSegRequest
    from ..worker.segmentation_eval.outputs import format_table
    from .evaluate import _bar

    models = tuple(parse_model(m, args.vlsm_config, getattr(args, "precision", "auto")) for m in args.models)
    req = EvaluateSegRequest(args.data, models, tuple(args.prompts), None if args.split == "all" else args.split,
                             args.out, args.resolution, args.bootstrap, args.seed, args.device, args.scheduler,
                             args.shards, not args.no_masks)
    result = Engine().run(req, ProgressReporter(_bar))
    lines = []
    if result.untrained:
        lines.append("WARNING: untrained weights in at least one model: the scores say nothing about the method.")
    lines += [format_table(result, "dice"), "", format_table(result, "iou")]
    lines.append(f"{result.counts['samples']} images x {len(result.prompts)} prompt types x {len(result.models)} "
                 f"model(s); {result.resumed} resumed from {args.out}; files in {args.out}")
    emit(result.to_dict(), args.json, "\n".join(lines))
    return 0


def run_check(args) -> int:
    from ..io.datasets import load_sample, open_seg_dataset

    data = open_seg_dataset(args.data, None if args.split == "all" else args.split)
    notes: list[str] = []
    for i, s in enumerate(data.samples):
        load_sample(s, notes=notes)
        stderr_progress(i + 1, len(data.samples), s.sample_id)
    types = sorted({k for s in data.samples for k in s.prompts}, key=lambda k: (len(k), k))
    d = {"data": data.source, "layout": data.layout, "split": data.split, "samples": len(data.samples),
         "prompt_types": types, "patients": len({s.patient_id for s in data.samples if s.patient_id}) or None,
         "negatives": sum(s.negative for s in data.samples), "notes": notes}
    emit(d, args.json, f"{data.source}: {len(data.samples)} samples in split {data.split}, all readable; prompt "
                       f"types {', '.join(types)}" + "".join(f"\nnote: {n}" for n in notes[:20]))
    return 0


def run_export(args) -> int:
    from ..core.errors import VipInputError
    from ..io.datasets import export_medvlsm, open_seg_dataset, pair_folders

    if args.images:
        if not args.masks:
            raise VipInputError("--images needs --masks (the folder of masks matched by file stem).")
        samples = pair_folders(args.images, args.masks, tuple(args.fractions), args.seed)
    else:
        samples = open_seg_dataset(args.csv, None).samples
    res = export_medvlsm(samples, args.out, args.class_name, args.definition, args.definitions,
                         ladder=not args.no_ladder, progress=stderr_progress)
    emit(res, args.json, f"wrote {sum(res['splits'].values())} samples to {res['out']}: "
                         + ", ".join(f"{k} {v}" for k, v in res["splits"].items()))
    return 0
