"""``napari-vip finetune DATA --model clipseg|biomedclipseg|biomedclipseg-d [--vlsm-checkpoint DIR] --prompt p6
--out DIR [--epochs N --batch-size B --lr LR --train decoder|decoder+text --precision auto|fp32|bf16|fp16] --json``: fine-tune a VLSM on the
user's masks with medvlsm's recipe (see docs/vlsm.md); runs unchanged under ``torchrun --nproc_per_node N``."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..models.device import DEVICES
    from ..models.precision import PRECISIONS
    from ..models.vlsm.finetune import LOSSES, TRAIN_PARTS
    from ..models.vlsm.spec import FAMILIES

    p = sub.add_parser("finetune", help="fine-tune a VLSM (CLIPSeg, BiomedCLIPSeg) on a data set's masks")
    p.add_argument("data", help="folder in medvlsm's layout (images/, masks/, anns/{train,val,test}.json) or a CSV "
                                "(image, mask, prompt, split[, patient_id])")
    p.add_argument("--model", choices=FAMILIES, default="clipseg", help="VLSM family to start from")
    p.add_argument("--vlsm-checkpoint", default=None, metavar="SOURCE",
                   help="starting weights: a Hugging Face folder, .safetensors, a finetune output or a hub id "
                        "(default: the family's released weights from the hub)")
    p.add_argument("--vlsm-untrained", action="store_true", help="start from random weights (to try the workflow)")
    p.add_argument("--vlsm-config", default=None, metavar="JSON", help="architecture JSON (untrained / safetensors)")
    p.add_argument("--method", default="vlsm", help="fine-tuning method: vlsm (medvlsm's recipe) or cotexnet")
    c = p.add_argument_group("CoTexNet (--method cotexnet; see docs/cotexnet.md)")
    c.add_argument("--keyword", default=None, help="what the region is, e.g. \"polyp area\" (the sentences' keyword)")
    c.add_argument("--dataset", default=None, help="use the released keyword of this data set (kvasir, busi, ...)")
    c.add_argument("--attributes", choices=("mask", "llm"), default="mask",
                   help="region attributes measured from the masks (default) or asked of a multimodal model")
    c.add_argument("--sentences", default=None, metavar="CSV",
                   help="the sentences to train with (napari-vip sentences, edited); others are made as --attributes")
    c.add_argument("--distill-weight", type=float, default=None, help="weight of the KL term (released 10)")
    c.add_argument("--llm-url", default=None, help="multimodal endpoint URL (default $NAPARI_VIP_LLM_URL)")
    c.add_argument("--llm-model", default=None, help="multimodal model name (default $NAPARI_VIP_LLM_MODEL)")
    c.add_argument("--llm-key-env", default=None, help="environment variable holding the API key")
    p.add_argument("--prompt", default=None,
                   help="prompt type p0..p9 or random (any but p0, as released; default p6); a list value is drawn "
                        "per epoch (--method cotexnet trains on its attribute sentences instead)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (resumed from when interrupted)")
    p.add_argument("--epochs", type=int, default=None, help="most epochs (released: 1000, early stopping 20)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch size (released: 128; small data sets need smaller batches)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (released: 2e-3)")
    p.add_argument("--train", choices=TRAIN_PARTS, default=None,
                   help="what learns: the decoder (as released: transformers' CLIPSeg never updates its towers) "
                        "or the decoder and the text tower")
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="released: DiceCELoss on sigmoid probabilities as medvlsm ran it (its CE term is 0 for one "
                        "channel); dice_bce: DiceCELoss(sigmoid=True) with binary cross-entropy")
    p.add_argument("--seed", type=int, default=None, help="random seed (released: 42)")
    p.add_argument("--early-stop", type=int, default=None, metavar="EPOCHS",
                   help="early-stopping patience on validation Dice (released: 20)")
    p.add_argument("--micro-batches", type=int, default=None, metavar="N",
                   help="one process: split each global batch as N torchrun processes would and accumulate their "
                        "gradients (the same weights as --nproc_per_node N, to the last bit)")
    p.add_argument("--no-store-activations", action="store_true",
                   help="run the frozen image encoder at every step instead of storing its activations once")
    p.add_argument("--activations", default=None, metavar="DIR",
                   help="where the encoder's activations are stored (default: the user cache)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--no-resume", action="store_true", help="start again even if DIR holds an interrupted run")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="what the frozen vision encoder (the stored activations) runs in; what trains and the saved "
                        "weights stay float32 (auto: bf16 on CPUs with AMX/AVX-512-BF16 and on GPUs that run it, "
                        "fp16 on older GPUs, else fp32; see docs/precision.md)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def request_from_args(args):
    from ..models.vlsm import VlsmSpec
    from ..models.vlsm.spec import DEFAULT_SOURCES
    from ..worker.finetune import FinetuneRequest

    source = args.vlsm_checkpoint
    if source is None and not args.vlsm_untrained:
        source = DEFAULT_SOURCES[args.model]
    spec = VlsmSpec(args.model, source=source, untrained=args.vlsm_untrained, config=args.vlsm_config,
                    precision=getattr(args, "precision", "auto"))
    recipe = {"prompt": args.prompt, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "train": args.train, "loss": args.loss, "seed": args.seed, "early_stop_patience": args.early_stop,
              "micro_batches": args.micro_batches}
    if args.no_store_activations:
        recipe["store_activations"] = False
    options = {}
    if args.method == "cotexnet":
        from .sentences import keyword_from_args, llm_from_args

        options = {"keyword": keyword_from_args(args) if (args.keyword or args.dataset) else None,
                   "attributes": args.attributes, "sentences": args.sentences,
                   "llm": llm_from_args(argparse.Namespace(llm_timeout=None, **{
                       k: getattr(args, k) for k in ("llm_url", "llm_model", "llm_key_env")}))
                   if args.attributes == "llm" else None}
        if args.distill_weight is not None:
            options["distill_weight"] = args.distill_weight
    return FinetuneRequest(args.data, spec, args.out, method=args.method, method_options=options,
                           recipe={k: v for k, v in recipe.items() if v is not None}, train_split=args.train_split,
                           val_split=args.val_split, activations=args.activations, resume=not args.no_resume,
                           device=args.device)


def run(args) -> int:
    import os

    from ..worker.engine import Engine, ProgressReporter
    from .common import emit, stderr_progress

    rank = int(os.environ.get("RANK", "0"))
    req = request_from_args(args)
    res = Engine().run(req, ProgressReporter(stderr_progress if rank == 0 else None))
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except ImportError:  # pragma: no cover
        pass
    if rank != 0:
        return 0
    lines = [f"{res.method}: {len(res.history)} epochs on {res.n_train} images (validation {res.n_val}); "
             f"{res.stopped}"]
    if res.best_epoch is not None:
        lines.append(f"best validation Dice {res.best_val_dice:.4f} at epoch {res.best_epoch}")
    if res.resumed_from is not None:
        lines.append(f"resumed after epoch {res.resumed_from}")
    lines += [f"note: {n}" for n in res.notes]
    lines.append(f"saved {res.out_dir} (load it with --vlsm-checkpoint {res.out_dir})")
    emit(res.to_dict(), args.json, "\n".join(lines))
    return 0
