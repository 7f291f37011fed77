"""``napari-vip evaluate DATA --model ViT-B-16 --checkpoint clip.pt --conditions none crop ... --out DIR --json``."""

from __future__ import annotations

import sys

from .common import add_model_args, emit, model_spec_from_args, untrained_warning


def add_parser(sub) -> None:
    from ..core.eval_conditions import CONDITIONS, PAPER_CONDITIONS
    from ..core.markers import COLORS
    from ..core.recipes import RECIPES
    from ..io.eval_adapters import LAYOUTS

    p = sub.add_parser("evaluate", help="evaluate marker conditions on a labelled data set (AUROC with CIs)")
    p.add_argument("data", help="CSV of path,label,x0,y0,x1,y1[,patient_id,split], a folder of class folders, "
                                "or a public metadata file with --layout")
    p.add_argument("--layout", default=None, choices=("csv", "folder", *LAYOUTS),
                   help="public layout of DATA: nih14 (BBox_List_2017.csv), vindr (annotations_*.csv), "
                        "padchest-gr (grounded reports JSON), jsrt (CLNDAT_EN.txt)")
    p.add_argument("--images", default=None, help="folder of your local copy of a public data set's images")
    p.add_argument("--metadata", default=None, help="PadChest-GR's CSV of ImageID,label_group,label")
    p.add_argument("--classes", nargs="+", default=None, help="evaluate only these labels (others are skipped)")
    p.add_argument("--conditions", nargs="+", default=list(PAPER_CONDITIONS), metavar="NAME",
                   help=f"from {', '.join(CONDITIONS)} (default: the paper's eight)")
    p.add_argument("--color", default="red", choices=COLORS)
    p.add_argument("--line-width", type=int, default=1)
    p.add_argument("--text-style", default="circle", choices=("bbox", "circle", "arrow"),
                   help="the marker phrase of the text-only condition")
    p.add_argument("--recipe", default="paper", choices=RECIPES)
    p.add_argument("--template", default=None, help="prompt template with {c} {suffix} {modality} (default: the "
                                                    "layout's own for jsrt, else 'A {modality} with signs of "
                                                    "{c}{suffix}.')")
    p.add_argument("--modality", default=None)
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the 95%% CIs (by patient_id if given)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=4, help="threads decoding and rendering ahead of the model")
    p.add_argument("--store", default=None, help="embedding store folder (default OUT/embeddings)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://host:8786): embed on its workers")
    p.add_argument("--save-renders", default=None, metavar="DIR",
                   help="write every (sample, condition) image the model receives as DIR/<sample>__<condition>.png "
                        "(index: DIR/renders.csv)")
    p.add_argument("--released-quirks", action="store_true",
                   help="reproduce the released code where napari-vip differs on purpose: the VinDr/NIH14 crop "
                        "with the image's axes swapped, AUROC/AUPRC/MCC all n/a when a class has no samples")
    p.add_argument("--out", required=True, help="folder for predictions.csv, metrics.json, metrics.csv, auroc.png")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _bar(done: int, total: int, text: str = "") -> None:
    if total:
        filled = int(30 * done / total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {text[:40]:40s}")
        if done == total:
            sys.stderr.write("\n")
    elif text:
        sys.stderr.write(f"... {text}\n")
    sys.stderr.flush()


def _fmt(v, ci=None) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.3f}" if ci == "diff" else f"{v:.3f}"


def table(result) -> str:
    """Condition x metric with 95% CIs and the AUROC difference to ``none``."""
    lines = [(f"{'condition':14s} {'AUROC [95% CI]':24s} {'AUPRC':7s} {'acc':7s} {'bal.acc':7s} {'MCC':7s} "
             f"{'ECE':7s} {'dAUROC vs none [95% CI]':28s} DeLong p")]
    for c in result.conditions:
        m = result.metrics[c.name]
        lo, hi = m["ci"]["auroc"] or (None, None)
        row = f"{c.name:14s} {_fmt(m['auroc'])} [{_fmt(lo)}, {_fmt(hi)}]".ljust(40)
        row += " ".join(f"{_fmt(m[k]):7s}" for k in ("auprc", "accuracy", "balanced_accuracy", "mcc", "ece"))
        if "difference" in m:
            dlo, dhi = m["difference_ci"]["auroc"] or (None, None)
            d = m["difference"]["auroc"]
            row += f" {_fmt(d, 'diff')} [{_fmt(dlo, 'diff')}, {_fmt(dhi, 'diff')}]".ljust(29)
            row += f" {m['delong']['p_value']:.3g}"
        lines.append(row)
    lines.append(f"{result.counts['evaluated']} samples evaluated, {result.counts['skipped']} skipped; "
                 f"files in {result.files.get('metrics_json', '').rsplit('/', 1)[0] or '-'}")
    return "\n".join(lines)


def run(args) -> int:
    from ..core.prompts import DEFAULT_MODALITY
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.evaluate import EvaluateRequest

    req = EvaluateRequest(args.data, model_spec_from_args(args), tuple(args.conditions), args.out, args.layout,
                          args.images, args.metadata, args.classes, args.recipe, args.color, args.line_width,
                          args.text_style, args.template, args.modality or DEFAULT_MODALITY,
                          args.bootstrap, args.seed, args.batch_size, args.threads, args.device, args.store,
                          args.scheduler, save_renders=args.save_renders, released_quirks=args.released_quirks)
    result = Engine().run(req, ProgressReporter(_bar))
    for line in untrained_warning(result.provenance.untrained):
        sys.stderr.write(line + "\n")
    emit(result.to_dict(), args.json, table(result))
    return 0
