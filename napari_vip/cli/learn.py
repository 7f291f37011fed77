"""``napari-vip learn DATA --descriptors LIBRARY.json --method vip [--preset released] --out PROMPTS.pt --json``."""

from __future__ import annotations

from .common import add_model_args, emit, engine_for, model_spec_from_args, stderr_progress, untrained_warning


def add_parser(sub) -> None:
    from ..models.training import AUGMENTATIONS, BEST_BY, PRESETS, TrainConfig

    d = TrainConfig()
    rel = PRESETS["released"]

    def dflt(name: str) -> str:
        """Help text naming a field's value in both recipes."""
        return f"(project: {getattr(d, name)}; released: {rel.get(name, getattr(d, name))})"

    p = sub.add_parser("learn", help="learn ViP or CoOp prompts on labelled images (CLIP stays frozen)")
    p.add_argument("data", help="folder with one sub-folder of images per class, or a CSV of path,label[,x0,y0,x1,y1]")
    p.add_argument("--descriptors", metavar="LIBRARY.json", default=None,
                   help="symptom library {'version': 1, 'classes': {class: [descriptor, ...]}}; 'default' for the "
                        "bundled library merged with yours (needed for ViP)")
    p.add_argument("--method", default="vip", choices=("vip", "coop"))
    p.add_argument("--compare", action="store_true", help="also train the other method on the same split")
    p.add_argument("--out", metavar="PROMPTS.pt", default=None, help="save the learned prompts here")
    p.add_argument("--classes", nargs="+", default=None, help="use only these classes (default: all found)")
    g = p.add_argument_group("training", "a recipe (--preset) and the fields to change in it")
    g.add_argument("--preset", default="project", choices=tuple(PRESETS),
                   help="project: for small data sets (at least --min-steps steps, cached features, 10 epochs); "
                        "released: the released ViP configs (50 epochs, random resized crops and flips every "
                        "epoch, one pass per epoch, float16 on a GPU); see docs/learning.md")
    g.add_argument("--epochs", type=int, default=None, help=dflt("epochs"))
    g.add_argument("--batch-size", type=int, default=None, help=dflt("batch_size"))
    g.add_argument("--lr", type=float, default=None,
                   help="SGD learning rate after warm-up (cosine schedule) " + dflt("lr"))
    g.add_argument("--momentum", type=float, default=None, help=dflt("momentum"))
    g.add_argument("--weight-decay", type=float, default=None, help=dflt("weight_decay"))
    g.add_argument("--warmup-epochs", type=int, default=None, help=dflt("warmup_epochs"))
    g.add_argument("--warmup-lr", type=float, default=None, help=dflt("warmup_lr"))
    g.add_argument("--min-steps", type=int, default=None,
                   help="fewest optimiser steps in all: a small training set is cycled within each epoch "
                        + dflt("min_steps"))
    g.add_argument("--n-ctx", type=int, default=None, help="number of learned context vectors " + dflt("n_ctx"))
    g.add_argument("--class-specific", action="store_true", default=None, help="one set of context vectors per class")
    g.add_argument("--val-fraction", type=float, default=None, help=f"(default {d.val_fraction})")
    g.add_argument("--seed", type=int, default=None, help=f"(default {d.seed})")
    g.add_argument("--augment", nargs="?", const="crop-flip", default=None, choices=AUGMENTATIONS,
                   help="augment the training images, recomputing their features every epoch: crop-flip (80-100%% "
                        "crops and flips; the flag alone) or released (random resized crops 8-100%% and flips) "
                        + dflt("augment"))
    g.add_argument("--no-cache", action="store_true", default=None, help="recompute image features every epoch")
    g.add_argument("--best-by", default=None, choices=BEST_BY,
                   help="epoch kept: best validation accuracy, ties to the lower loss, or the first best accuracy "
                        + dflt("best_by"))
    p.add_argument("--template", default=None, help="class-name prompt of the zero-shot baseline")
    p.add_argument("--modality", default=None)
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..worker.engine import ProgressReporter
    from ..worker.learn import LearnRequest

    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs, "warmup_lr": args.warmup_lr,
             "min_steps": args.min_steps, "n_ctx": args.n_ctx, "class_specific": args.class_specific,
             "val_fraction": args.val_fraction, "seed": args.seed, "augment": args.augment,
             "cache_features": None if args.no_cache is None else False, "best_by": args.best_by}
    config = {k: v for k, v in given.items() if v is not None}  # the rest comes from the preset
    library = None
    if args.descriptors is not None:
        library = "" if args.descriptors == "default" else args.descriptors
    req = LearnRequest(args.data, model_spec_from_args(args), args.out, args.method, args.compare,
                       descriptors_path=library, config=config, preset=args.preset, classes=args.classes,
                       template=args.template,
                       modality=args.modality, device=args.device)
    result = engine_for(args).run(req, ProgressReporter(_epoch_lines))
    lines = untrained_warning(result.provenance.untrained)
    lines += [f"note: {n}" for n in result.notes]
    counts = ", ".join(f"{c}: {n}" for c, n in result.dataset["counts"].items())
    lines.append(f"data: {counts}; train {result.split['train']}, val {result.split['val']} "
                 f"(seed {result.split['seed']}); evaluated on {result.split['evaluated_on']}")
    changed = result.provenance.extra.get("preset_overrides") or {}
    lines.append(f"recipe: {result.config['preset']}"
                 + (f" with {', '.join(f'{k}={v}' for k, v in changed.items())}" if changed else ""))
    lines.append(result.table())
    if result.out:
        lines.append(f"\nlearned {result.method} prompts saved to {result.out}")
    emit(result.to_dict(), args.json, "\n".join(lines))
    return 0


def _epoch_lines(done: int, total: int, text: str = "", data: dict | None = None) -> None:
    """Progress on stderr: every epoch summary and the other steps, but not each batch."""
    if ": batch " in text:
        return
    stderr_progress(done, total, text)
