"""Text -> mask with a VLSM (CLIPSeg, BiomedCLIPSeg, a fine-tuned folder) in the worker, optionally refined by SAM.

The VLSM's mask becomes a candidate like SAM's: the result holds a :class:`~napari_vip.worker.segment.SegmentResult`
(``segment``) that the segment dock and the CLI commit as they commit SAM's.  **Refine with SAM** hands SAM / SAM 2
the bounding box of the VLSM's mask and its logits as SAM's low-resolution ``mask_input`` (resized into SAM's
input frame); SAM's answer is the candidate.

Coordinates: boxes ``(x0, y0, x1, y1)`` in pixels of the model-input image; masks ``(H, W)`` rows first.
"""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from .. import __version__
from ..core.errors import VipInputError
from .engine import handles
from .protocol import Provenance

#: SAM's mask-input logits are clipped to this magnitude (SAM's own low-resolution logits rarely exceed it).
MASK_LOGIT_CLIP = 20.0


@dataclass
class VlsmSegmentRequest:
    """Segment what ``text`` names on one image with a VLSM.

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8 model input (the plane in view, windowed as displayed).
    text : str
        The prompt, e.g. ``"one small pink circle polyp, located in right of the image"``.
    vlsm : VlsmSpec
    refine_sam : bool
        Hand the VLSM mask's box and logits to ``sam`` and return SAM's mask instead.
    sam : SamSpec or Sam2Spec or None
        Needed with ``refine_sam``.
    multimask : bool
        SAM's three candidates when refining (default one: box and mask leave little ambiguity).
    window, invert, image_sig, disk_cache
        SAM embedding cache keys and options (see :class:`~napari_vip.worker.segment.SamImageRequest`).
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu`` (both models).
    """

    image_rgb: np.ndarray
    text: str
    vlsm: object
    _: KW_ONLY
    refine_sam: bool = False
    sam: object = None
    multimask: bool = False
    window: tuple[float, float] | None = None
    invert: bool = False
    image_sig: str | None = None
    device: str = "auto"
    disk_cache: bool = True


@dataclass
class VlsmSegmentResult:
    """The candidate (``segment``), the VLSM's probability map and mask, and each step's provenance.

    Attributes
    ----------
    text : str
    segment : SegmentResult
        ``masks (1, C, H, W)`` bool: the VLSM's mask (``C = 1``), or SAM's candidates when refined.
    prob : np.ndarray
        ``(H, W)`` float32 VLSM probability (nearest-exact resized).
    vlsm_mask : np.ndarray
        ``(H, W)`` bool VLSM mask (threshold 0.5 at the model's size).
    steps : list of dict
        ``vlsm`` (spec, sha256, untrained, family, method, text) and, when refined, ``sam``.
    """

    text: str
    segment: object
    prob: np.ndarray
    vlsm_mask: np.ndarray
    steps: list
    notes: list = field(default_factory=list)

    @property
    def untrained(self) -> bool:
        return any(s.get("untrained") for s in self.steps)

    @property
    def refined(self) -> bool:
        return any(s.get("step") == "sam" for s in self.steps)

    def to_dict(self) -> dict:
        d = self.segment.to_dict()
        d.update({"text": self.text, "steps": self.steps, "untrained": self.untrained, "refined_by_sam": self.refined,
                  "vlsm_area": int(self.vlsm_mask.sum()), "prob_shape": list(self.prob.shape)})
        return d


def vlsm_model(engine, spec, device: str, progress=None):
    """The engine's cached :class:`~napari_vip.models.vlsm.VlsmModel` for ``spec`` on ``device``, its vision tower
    in ``spec.precision`` (``auto`` resolved on ``device``)."""
    from ..models.device import resolve_device
    from ..models.precision import apply_vlsm_precision, concrete_precision
    from ..models.vlsm import load_vlsm

    dev = resolve_device(device)
    spec = concrete_precision(spec, dev, "vlsm")
    say = (lambda text: progress(0, 0, text)) if progress else None
    return engine.model(("vlsm", spec, dev), lambda: apply_vlsm_precision(load_vlsm(spec, dev, say), spec.precision))


def mask_box_xyxy(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` box through the centres of the outermost True pixels of a ``(H, W)`` mask (the
    project's box convention, :func:`~napari_vip.core.coords.clip_box_xyxy`); one pixel wide or high: widened to
    the next pixel centre.  ``None`` for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    h, w = mask.shape
    x0, x1, y0, y1 = float(cols[0]), float(cols[-1]), float(rows[0]), float(rows[-1])
    if x1 == x0:
        x0, x1 = (x0 - 1, x1) if x1 >= w - 1 else (x0, x1 + 1)
    if y1 == y0:
        y0, y1 = (y0 - 1, y1) if y1 >= h - 1 else (y0, y1 + 1)
    return x0, y0, x1, y1


def sam_mask_input(logits_image: np.ndarray, input_size, image_size: int) -> np.ndarray:
    """VLSM logits over the whole image -> SAM's ``(1, s/4, s/4)`` mask input.

    Parameters
    ----------
    logits_image : np.ndarray
        ``(h, w)`` float logits covering the image (any resolution; the VLSM's ``S x S``).
    input_size : (int, int)
        The embedding's resized image inside SAM's ``image_size`` square (SAM: longest side = ``image_size``,
        padded right/bottom; SAM 2 and MedSAM: the whole square).
    image_size : int
        SAM's encoder input size ``s`` (1024 released).
    """
    import torch
    import torch.nn.functional as F

    low = image_size // 4
    ih, iw = (max(1, round(v / 4)) for v in input_size)
    t = torch.as_tensor(np.asarray(logits_image, np.float32))[None, None]
    inner = F.interpolate(t, size=(ih, iw), mode="bilinear", align_corners=False)[0, 0].numpy()
    out = np.full((low, low), -MASK_LOGIT_CLIP, dtype=np.float32)
    out[:ih, :iw] = np.clip(inner, -MASK_LOGIT_CLIP, MASK_LOGIT_CLIP)
    return out[None]


@handles(VlsmSegmentRequest)
def vlsm_segment(engine, req: VlsmSegmentRequest, progress) -> VlsmSegmentResult:
    from .segment import SegmentRequest, SegmentResult, _check_image, get_embedding, sam_model, segment

    image = _check_image(req.image_rgb)
    text = (req.text or "").strip()
    progress(0, 4, "loading the VLSM")
    model = vlsm_model(engine, req.vlsm, req.device, progress)
    if model.needs_text and not text:
        raise VipInputError("Type what to segment, e.g. 'one small pink circle polyp' (or pick a prompt from the "
                            "ladder).")
    if req.refine_sam and req.sam is None:
        raise VipInputError("Refine with SAM needs a SAM or SAM 2 model: choose one (--sam-checkpoint).")
    progress(1, 4, f"{model.family}: {text!r}")
    t0 = time.perf_counter()
    pred = model.predict(image, text)
    t1 = time.perf_counter()
    steps = [{"step": "vlsm", "text": text, **model.provenance(), "area": int(pred.mask.sum())}]
    notes = []
    box = mask_box_xyxy(pred.mask)
    if not req.refine_sam:
        score = float(pred.prob[pred.mask].mean()) if box is not None else 0.0
        if box is None:
            notes.append(f"the {model.family} mask for {text!r} is empty")
        low = _candidate_logits(engine, req, pred.logits_model, image.shape[:2], progress)
        seg = SegmentResult(pred.mask[None, None], np.asarray([[score]], np.float32), low[None], [box] if box else [],
                            np.zeros((0, 2)), np.zeros((0,), np.int64), "none",
                            {"embedding": 0.0, "decode": round((t1 - t0) * 1000, 2)},
                            Provenance(__version__, **_prov_fields(model), extra={"text": text}), notes)
        progress(4, 4, "done")
        return VlsmSegmentResult(text, seg, pred.prob, pred.mask, steps, notes)
    if box is None:
        raise VipInputError(f"The {model.family} mask for {text!r} is empty: nothing for SAM to refine. Try another "
                            "prompt, or segment without Refine with SAM.")
    progress(2, 4, "refining with SAM")
    sam = sam_model(engine, req.sam, req.device, progress)
    emb, _, _ = get_embedding(engine, sam, image, req.window, req.invert, req.image_sig, req.disk_cache, progress)
    mask_in = sam_mask_input(pred.logits_model, emb.input_size, sam.image_size)
    seg = segment(engine, SegmentRequest(image, req.sam, boxes_xyxy=[box], mask_logits=mask_in,
                                         multimask=req.multimask, window=req.window, invert=req.invert,
                                         image_sig=req.image_sig, device=req.device, disk_cache=req.disk_cache),
                  lambda done, total, step="": progress(3, 4, step))
    seg.notes.insert(0, f"SAM refined the {model.family} mask of {text!r}: box "
                        f"{tuple(round(v, 1) for v in box)} and the mask's logits as SAM's mask input")
    steps.append({"step": "sam", **seg.provenance.to_dict(), "prompts": {**seg.prompts(), "mask_input": "vlsm logits"}})
    progress(4, 4, "done")
    return VlsmSegmentResult(text, seg, pred.prob, pred.mask, steps, notes)


def _candidate_logits(engine, req, logits_model: np.ndarray, hw, progress) -> np.ndarray:
    """``(1, s/4, s/4)`` low-resolution logits of the VLSM candidate in the frame of ``req.sam`` (what the segment
    session hands SAM when the user then clicks to refine): SAM 1 keeps the aspect ratio (longest side ``s``),
    SAM 2 and MedSAM fill the square; without a SAM, a 1024 square."""
    if req.sam is None:
        return sam_mask_input(logits_model, (1024, 1024), 1024)
    from ..models.sam import SamSpec
    from .segment import sam_model

    sam = sam_model(engine, req.sam, req.device, progress)
    s = sam.image_size
    if isinstance(req.sam, SamSpec) and not req.sam.medsam:
        scale = s / max(hw)
        size = (int(hw[0] * scale + 0.5), int(hw[1] * scale + 0.5))  # segment_anything's ResizeLongestSide
    else:
        size = (s, s)
    return sam_mask_input(logits_model, size, s)


def _prov_fields(model) -> dict:
    p = model.provenance()
    extra = {k: p[k] for k in ("family", "method", "input_size", "threshold")}
    return {"model": {**p["model"], **extra}, "weights_sha256": p["weights_sha256"], "untrained": p["untrained"],
            "device": p["device"]}
