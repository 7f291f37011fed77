"""``napari-vip sentences``: CoTexNet's attribute sentences of a data set, as a CSV the user can edit before training.

    napari-vip sentences DATA --keyword "polyp area" [--split train] [--attributes mask|llm
        --llm-url URL --llm-model NAME] --out sentences.csv [--json]

``--attributes mask`` measures the five attributes from each mask (no model); ``llm`` asks the multimodal
model at the OpenAI-compatible endpoint (the ROI image and the released question; answers cached per ROI
image and model, so a run that stops goes on where it stopped).  ``--keyword`` defaults to the released
keyword of ``--dataset`` (kvasir -> "polyp area", busi -> "tumor area", ...).
"""

from __future__ import annotations

from .common import emit, stderr_progress


def add_parser(sub) -> None:
    p = sub.add_parser("sentences", help="CoTexNet's region-attribute sentences of a data set (an editable CSV)")
    p.add_argument("data", help="medvlsm folder (images/, masks/, anns/) or CSV (image, mask, prompt, split)")
    p.add_argument("--split", default="train", help="split to describe (default train; 'all' for every CSV row)")
    p.add_argument("--keyword", default=None, help="what the region is, e.g. \"polyp area\"")
    p.add_argument("--dataset", default=None, help="take the released keyword of this data set (kvasir, busi, ...)")
    p.add_argument("--attributes", choices=("mask", "llm"), default="mask",
                   help="measure the attributes from the mask, or ask a multimodal model (default mask)")
    p.add_argument("--llm-url", default=None, help="endpoint URL (default $NAPARI_VIP_LLM_URL)")
    p.add_argument("--llm-model", default=None, help="model name (default $NAPARI_VIP_LLM_MODEL)")
    p.add_argument("--llm-key-env", default=None,
                   help="environment variable holding the API key (default NAPARI_VIP_LLM_API_KEY)")
    p.add_argument("--llm-timeout", type=float, default=None, help="seconds per question (default 30)")
    p.add_argument("--max-attempts", type=int, default=5, help="questions per image before giving up (default 5)")
    p.add_argument("--cache", default=None, help="answer cache file (default in the napari-vip cache folder)")
    p.add_argument("--out", default=None, help="write the sentence CSV here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def keyword_from_args(args) -> str:
    from ..core.errors import VipInputError
    from ..core.region_attributes import keyword_for

    if args.keyword:
        return args.keyword
    if args.dataset:
        return keyword_for(args.dataset)
    raise VipInputError("Give --keyword (e.g. \"polyp area\") or --dataset (a released data set name).")


def llm_from_args(args):
    from ..models.llm_descriptors import LlmConfig

    return LlmConfig.from_env(url=args.llm_url, model=args.llm_model, key_env=args.llm_key_env,
                              timeout_s=args.llm_timeout)


def run(args) -> int:
    from ..worker.engine import Engine, ProgressReporter
    from ..worker.region_sentences import RegionSentencesRequest

    req = RegionSentencesRequest(data=args.data, keyword=keyword_from_args(args),
                                 split=None if args.split == "all" else args.split, attributes=args.attributes,
                                 llm=llm_from_args(args) if args.attributes == "llm" else None, cache=args.cache,
                                 out=args.out, max_attempts=args.max_attempts)
    result = Engine().run(req, ProgressReporter(stderr_progress))
    lines = [f"{r.sample_id}\t{r.sentence}" for r in result.rows]
    if result.out:
        lines.append(f"wrote {len(result.rows)} sentences to {result.out} (edit the 'sentence' column, then "
                     "napari-vip finetune DATA --method cotexnet --sentences FILE)")
    emit(result.to_dict(), args.json, "\n".join(lines))
    return 0
