"""One sample of a segmentation evaluation: the model's logits for each prompt type, Dice and IoU with MONAI.

Shared by the local run (:mod:`.run`) and the Dask workers (:mod:`.cluster`); see :mod:`.run` for what is
measured and how the texts are drawn.
"""

from __future__ import annotations

import random

import numpy as np

from ...core.prompt_ladder import choose_prompt


def load_seg_model(spec, device: str = "cpu"):
    """The VLSM of ``spec`` (``napari_vip.models.vlsm.load_vlsm``), its vision tower in ``spec.precision``
    (``auto`` resolved on ``device``; :func:`napari_vip.models.precision.apply_vlsm_precision`)."""
    from ...models.precision import apply_vlsm_precision, resolve_precision
    from ...models.vlsm import load_vlsm

    precision = resolve_precision(getattr(spec, "precision", "fp32"), device, "vlsm")
    return apply_vlsm_precision(load_vlsm(spec, device), precision)


def prompt_rng(seed: int, sample_id: str, prompt_type: str) -> random.Random:
    """The generator a (sample, prompt type) draws its text with: the same for every model and every run."""
    return random.Random(f"{seed}|{sample_id}|{prompt_type}")


def seg_scores(pred, target) -> tuple[float, float]:
    """``(dice, iou)`` of two ``(h, w)`` bool masks by MONAI's ``compute_dice`` / ``compute_iou`` on
    ``(1, 1, h, w)`` tensors with ``include_background=False, ignore_empty=False``, as the released code."""
    import torch
    from monai.metrics import compute_dice, compute_iou

    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))[None, None]
    dice = compute_dice(p, t, include_background=False, ignore_empty=False)
    iou = compute_iou(p, t, include_background=False, ignore_empty=False)
    return float(dice.reshape(-1)[0]), float(iou.reshape(-1)[0])


def predict_logits(model, image: np.ndarray, texts: list[str]) -> np.ndarray:
    """``(T, S, S)`` float32 logits of ``texts`` on one image: the image encoded once and decoded per text
    (contract API); :meth:`predict` once for a model that ignores text (``needs_text`` False, e.g. CoTexNet at test
    time), or per text for a model without the encode/decode API."""
    if not getattr(model, "needs_text", True):
        one = np.asarray(model.predict(image, texts[0] if texts else "").logits_model, np.float32)
        return np.repeat(one[None], len(texts), axis=0)
    if not (hasattr(model, "encode_image") and hasattr(model, "decode")):
        return np.stack([np.asarray(model.predict(image, t).logits_model, np.float32) for t in texts])
    import torch

    module = model.module
    was = module.training
    module.eval()
    try:
        with torch.no_grad():
            acts = model.encode_image(model.preprocess([image]))
            tok = model.tokenize(texts)
            cond = model.text_conditional(tok["input_ids"], tok["attention_mask"])
            logits = model.decode(acts.index([0] * len(texts)), cond)
    finally:
        module.train(was)
    return logits[:, 0].float().cpu().numpy()


def evaluate_sample(model, sample, prompt_types, seed: int, resolution: str) -> list[tuple[dict, np.ndarray]]:
    """Records and predicted masks (``(H, W)`` bool) of one sample for ``prompt_types``.

    Raises
    ------
    VipInputError
        The sample's files (named), a prompt type it lacks.
    """
    from ...io.datasets import load_sample, resize_mask_released, resize_nearest_exact

    image, gt = load_sample(sample)
    texts = [choose_prompt(sample.prompts, pt, prompt_rng(seed, sample.sample_id, pt)) for pt in prompt_types]
    logits = predict_logits(model, image, texts)
    threshold = float(getattr(model, "threshold", 0.5))
    out = []
    for pt, text, lg in zip(prompt_types, texts, logits):
        with np.errstate(over="ignore"):  # exp(-x) overflows to inf for very negative logits: sigmoid 0
            pred_model = 1.0 / (1.0 + np.exp(-lg.astype(np.float64))) > threshold
        pred_image = resize_nearest_exact(pred_model, gt.shape)
        if resolution == "model":
            dice, iou = seg_scores(pred_model, resize_mask_released(gt, pred_model.shape))
        else:
            dice, iou = seg_scores(pred_image, gt)
        out.append(({"sample_id": sample.sample_id, "patient_id": sample.patient_id, "prompt_type": pt,
                     "text": text, "dice": dice, "iou": iou}, pred_image))
    return out
