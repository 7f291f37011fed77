"""SAM/MedSAM segmentation in the worker: embed (precompute) and decode requests, results and handlers.

Coordinates: boxes ``(x0, y0, x1, y1)`` and points ``(x, y)`` in pixels of the model-input image (the plane
in view); masks ``(H, W)`` rows first.  The widget converts napari's (row, col) with
:mod:`napari_vip.core.coords` before building a request.
"""

from __future__ import annotations

import time
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from .. import __version__
from ..core.coords import clip_box_xyxy
from ..core.errors import VipInputError
from ..models.precision import concrete_precision
from ..models.sam import SamSpec
from ..models.sam2_family import Sam2Spec
from .engine import handles
from .protocol import Provenance


def check_prompts(boxes_xyxy, points_xy, point_labels, hw) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
    """Validate and normalise SAM prompts for an image of shape ``hw``.

    Boxes partly outside the image are clipped (a note says so); zero-area boxes, boxes wholly outside,
    points outside the image, labels other than 0/1, and a points-only prompt without a positive point are
    refused with :class:`VipInputError`.

    Returns
    -------
    boxes : list of (x0, y0, x1, y1)
    points_xy : np.ndarray
        ``(N, 2)`` float64.
    labels : np.ndarray
        ``(N,)`` int64, 1 positive, 0 negative.
    notes : list of str
    """
    notes: list[str] = []
    boxes = []
    for k, box in enumerate(boxes_xyxy or []):
        if len(box) != 4:
            raise VipInputError(f"Box {k + 1} has {len(box)} numbers; a box is X0 Y0 X1 Y1.")
        clipped, was = clip_box_xyxy(box, hw)
        if was:
            notes.append(f"box {k + 1} {tuple(round(float(v), 2) for v in box)} reaches outside the image; clipped to "
                         f"{tuple(round(v, 2) for v in clipped)}")
        boxes.append(tuple(float(v) for v in clipped))
    pts = np.asarray(points_xy if points_xy is not None else [], dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(point_labels if point_labels is not None else [], dtype=np.int64).reshape(-1)
    if len(pts) != len(labels):
        raise VipInputError(f"{len(pts)} points but {len(labels)} labels: give each point positive or negative.")
    if len(labels) and not np.isin(labels, (0, 1)).all():
        raise VipInputError("Point labels must be 1 (positive) or 0 (negative).")
    h, w = hw
    if len(pts):
        if not np.isfinite(pts).all():
            raise VipInputError("A point has a non-finite coordinate.")
        outside = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
        if outside.any():
            x, y = pts[np.argmax(outside)]
            raise VipInputError(f"Point (x={x:g}, y={y:g}) lies outside the {w}x{h} (width x height) image; "
                                "click on the image.")
    if not boxes and not len(pts):
        raise VipInputError("Nothing to segment: drag a box (or draw a marker) or click a positive point.")
    if not boxes and not (labels == 1).any():
        raise VipInputError("Only negative points: SAM needs a box or at least one positive point to know which "
                            "object you mean. Add a positive click or a box.")
    if len(boxes) > 1 and len(pts):
        raise VipInputError(f"{len(boxes)} boxes and {len(pts)} clicks: clicks refine one object, so use one box "
                            "with clicks, or several boxes without clicks.")
    return boxes, pts, labels, notes


@dataclass
class SamImageRequest:
    """What every SAM request carries: the model input, the model, and how the embedding is found.

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8 model input (:func:`napari_vip.core.image.to_model_rgb` of the plane in view,
        windowed as displayed).
    model : SamSpec or Sam2Spec
        SAM/MedSAM, or the SAM 2 family (SAM 2.1, MedSAM2).
    window : (float, float) or None
        Contrast limits used to make ``image_rgb`` (part of the embedding cache key). Keyword only, like
        the fields after it.
    invert : bool
        Whether ``image_rgb`` was inverted (MONOCHROME1; part of the cache key).
    image_sig : str, optional
        :func:`~napari_vip.models.embedding_cache.image_signature` of ``image_rgb`` if the caller has it.
    device : str
        ``auto``, ``cuda``, ``mps`` or ``cpu``.
    disk_cache : bool
        Read and write embeddings of trained weights on disk as well as in memory.
    """

    image_rgb: np.ndarray
    model: SamSpec | Sam2Spec
    _: KW_ONLY
    window: tuple[float, float] | None = None
    invert: bool = False
    image_sig: str | None = None
    device: str = "auto"
    disk_cache: bool = True

    def embedding_options(self) -> dict:
        """The keyword fields of :class:`SamImageRequest`, to build another SAM request on the same image."""
        return {"window": self.window, "invert": self.invert, "image_sig": self.image_sig, "device": self.device,
                "disk_cache": self.disk_cache}


@dataclass
class SegmentEmbedRequest(SamImageRequest):
    """Compute (or find in the cache) the SAM embedding of an image; the GUI sends it on image open/slice change.

    Fields: those of :class:`SamImageRequest`.
    """


@dataclass
class EmbedResult:
    key: str
    source: str  # "memory", "disk" or "computed"
    seconds: float
    image_shape: tuple[int, int]
    provenance: Provenance

    def to_dict(self) -> dict:
        return {"embedding_key": self.key, "source": self.source, "seconds": self.seconds,
                "image_shape": list(self.image_shape), "provenance": self.provenance.to_dict(),
                "untrained": self.provenance.untrained}


@dataclass
class SegmentRequest(SamImageRequest):
    """Masks for prompts on an image (embedding from the cache, computed if missing).

    Attributes
    ----------
    image_rgb, model, window, invert, image_sig, device, disk_cache
        See :class:`SamImageRequest`.
    boxes_xyxy : list of (x0, y0, x1, y1)
        Several boxes are decoded as one batch, one object each.
    points_xy : list of (x, y)
    point_labels : list of int
        1 positive, 0 negative.
    mask_logits : np.ndarray, optional
        ``(1, h, w)`` or ``(h, w)`` low-resolution logits of the mask being refined.
    multimask : bool
        Three candidates per prompt, sorted by SAM's score (``best`` is the highest).
    """

    boxes_xyxy: list = field(default_factory=list)
    points_xy: list = field(default_factory=list)
    point_labels: list = field(default_factory=list)
    mask_logits: np.ndarray | None = None
    multimask: bool = True


@dataclass
class SegmentResult:
    """Candidates for each prompt.

    Attributes
    ----------
    masks : np.ndarray
        ``(B, C, H, W)`` bool; ``B`` = number of boxes (1 for points only), ``C`` candidates ordered by
        descending score.
    scores : np.ndarray
        ``(B, C)`` float32, SAM's predicted IoU.
    low_res_logits : np.ndarray
        ``(B, C, h, w)`` float32, to pass back as ``mask_logits`` when refining.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray
    boxes_xyxy: list
    points_xy: np.ndarray
    point_labels: np.ndarray
    embedding_source: str
    timings_ms: dict
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def mask(self, b: int = 0, c: int = 0) -> np.ndarray:
        """``(H, W)`` bool candidate ``c`` of prompt ``b`` (``c=0`` is the best scored)."""
        return self.masks[b, c]

    def prompts(self) -> dict:
        return {"boxes_xyxy": [list(b) for b in self.boxes_xyxy], "points_xy": self.points_xy.tolist(),
                "point_labels": self.point_labels.astype(int).tolist()}

    def to_dict(self) -> dict:
        return {"prompts": self.prompts(), "scores": self.scores.tolist(),
                "mask_shape": list(self.masks.shape[2:]),
                "areas": self.masks.reshape(*self.masks.shape[:2], -1).sum(-1).tolist(),
                "embedding": self.embedding_source, "timings_ms": self.timings_ms,
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


def sam_model(engine, spec, device: str, progress=None):
    """The engine's cached model for ``spec`` on ``device``: a :class:`~napari_vip.models.sam.SamModel` for a
    :class:`SamSpec`, a :class:`~napari_vip.models.sam2_family.Sam2Model` for a ``Sam2Spec`` (both embed, decode
    and convert embeddings to and from arrays alike)."""
    from ..models.device import resolve_device
    from ..models.sam import load_sam
    from ..models.sam2_family import load_sam2

    if not isinstance(spec, (SamSpec, Sam2Spec)):
        raise VipInputError(f"Segmentation needs a SAM or SAM 2 model spec; got {type(spec).__name__}.")
    dev = resolve_device(device)
    say = (lambda text: progress(0, 0, text)) if progress else None
    spec = concrete_precision(spec, dev, "sam2" if isinstance(spec, Sam2Spec) else "sam")
    if isinstance(spec, Sam2Spec):
        return engine.model(("sam2", spec, dev), lambda: load_sam2(spec, dev, say))
    return engine.model(("sam", spec, dev), lambda: load_sam(spec, dev, say))


def get_embedding(engine, model, image_rgb, window, invert, image_sig=None, disk=True, progress=None):
    """``(SamEmbedding, key, source)``: from memory, else disk, else computed (and stored in both)."""
    from ..models.embedding_cache import CachedEmbedding, embedding_key, image_signature, key_parts

    cache = engine.sam_embeddings
    sig = image_sig or image_signature(image_rgb)
    args = (sig, window, invert, model.weights_id, model.spec.arch, getattr(model.spec, "medsam", False),
            model.prepare_version, model.precision)
    key, parts = embedding_key(*args), key_parts(*args)
    emb = cache.get_memory(key)
    if emb is not None:
        return emb, key, "memory"
    use_disk = disk and not model.untrained
    stored = cache.get_disk(key, parts) if use_disk else None
    if stored is not None and tuple(stored.original_size) == tuple(image_rgb.shape[:2]):
        try:
            emb = model.embedding_from_array(stored.features, stored.input_size, stored.original_size)
        except VipInputError:  # stored by another build of the model: recompute
            cache.remove(key)
        else:
            cache.put_memory(key, emb)
            return emb, key, "disk"
    if progress:
        progress(1, 3, "computing the image embedding")
    emb = model.embed(image_rgb)
    cache.put_memory(key, emb)
    if use_disk:
        cache.put_disk(key, parts, CachedEmbedding(model.embedding_array(emb), emb.input_size, emb.original_size))
    return emb, key, "computed"


def _check_image(image_rgb) -> np.ndarray:
    arr = np.asarray(image_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise VipInputError(f"SAM needs the (H, W, 3) uint8 model input; got {arr.shape} {arr.dtype}.")
    return arr


def _provenance(model, extra: dict) -> Provenance:
    return Provenance(__version__, **model.provenance(), extra=extra)


@handles(SegmentEmbedRequest)
def embed(engine, req: SegmentEmbedRequest, progress) -> EmbedResult:
    image = _check_image(req.image_rgb)
    progress(0, 3, "loading SAM")
    model = sam_model(engine, req.model, req.device, progress)
    t0 = time.perf_counter()
    _, key, source = get_embedding(engine, model, image, req.window, req.invert, req.image_sig, req.disk_cache,
                                   progress)
    progress(3, 3, "embedding ready")
    return EmbedResult(key, source, time.perf_counter() - t0, tuple(image.shape[:2]),
                       _provenance(model, {"window": req.window, "invert": req.invert}))


@handles(SegmentRequest)
def segment(engine, req: SegmentRequest, progress) -> SegmentResult:
    image = _check_image(req.image_rgb)
    boxes, pts, labels, notes = check_prompts(req.boxes_xyxy, req.points_xy, req.point_labels, image.shape[:2])
    progress(0, 3, "loading SAM")
    model = sam_model(engine, req.model, req.device, progress)
    t0 = time.perf_counter()
    emb, key, source = get_embedding(engine, model, image, req.window, req.invert, req.image_sig, req.disk_cache,
                                     progress)
    t1 = time.perf_counter()
    progress(2, 3, "decoding")
    logits = req.mask_logits
    if logits is not None and len(boxes) > 1:
        logits = None
        notes.append("the previous mask is not used with several boxes")
    out = model.decode(emb, boxes or None, pts if len(pts) else None, labels if len(pts) else None, logits,
                       req.multimask)
    order = np.argsort(-out.scores, axis=1, kind="stable")
    take = np.arange(len(order))[:, None]
    masks, scores, low = out.masks[take, order], out.scores[take, order], out.low_res_logits[take, order]
    t2 = time.perf_counter()
    medsam = getattr(model.spec, "medsam", False)
    if medsam and len(pts):
        notes.append("MedSAM was trained with boxes only; clicks may help little")
    progress(3, 3, "done")
    prov = _provenance(model, {"window": req.window, "invert": req.invert, "embedding_key": key,
                               "multimask": bool(req.multimask and not medsam)})
    return SegmentResult(masks, scores, low, boxes, pts, labels, source,
                         {"embedding": round((t1 - t0) * 1000, 2), "decode": round((t2 - t1) * 1000, 2)},
                         prov, notes)


# -- text to mask ------------------------------------------------------------------------------------------------
@dataclass
class TextSegmentRequest(SamImageRequest):
    """Language-prompted segmentation: phrase -> patch-text similarity map -> best region -> box and positive
    points -> SAM.

    Attributes
    ----------
    image_rgb, model, window, invert, image_sig, device, disk_cache
        See :class:`SamImageRequest` (``model`` is the SAM).
    text : str
        The phrase, embedded as given (e.g. ``"small bright nodule"``).
    clip : ModelSpec
        The CLIP ViT that makes the similarity map.
    threshold : float
        Region threshold on the normalised map (see :mod:`napari_vip.core.text_region`).
    n_points : int
        Positive points from the region (1: its peak; 2: peak and centre pixel).
    """

    text: str
    clip: object
    threshold: float = 0.5
    n_points: int = 2
    multimask: bool = True


@dataclass
class TextSegmentResult:
    """The SAM candidates, the heatmap they came from, the region chosen, and each step's provenance.

    Attributes
    ----------
    segment : SegmentResult
        Candidates for the region's box and points (commit them like any SAM result).
    heatmap : np.ndarray
        ``(H, W)`` float32 in [0, 1].
    grid : np.ndarray
        ``(gh, gw)`` float32 raw patch-text cosine similarities.
    steps : list of dict
        ``similarity`` (CLIP spec, sha256, untrained, text), ``region`` (threshold, box, points, score, area),
        ``sam`` (SAM spec, sha256, untrained, prompts).
    """

    text: str
    segment: SegmentResult
    heatmap: np.ndarray
    grid: np.ndarray
    region: object
    steps: list

    @property
    def untrained(self) -> bool:
        return any(s.get("untrained") for s in self.steps)

    def to_dict(self) -> dict:
        d = self.segment.to_dict()
        d.update({"text": self.text, "region": self.region.to_dict(), "steps": self.steps,
                  "untrained": self.untrained, "heatmap_shape": list(self.heatmap.shape),
                  "grid_shape": list(self.grid.shape)})
        return d


@handles(TextSegmentRequest)
def text_segment(engine, req: TextSegmentRequest, progress) -> TextSegmentResult:
    from ..core.text_region import region_prompt
    from ..models.attention import patch_text_similarity

    image = _check_image(req.image_rgb)
    text = (req.text or "").strip()
    if not text:
        raise VipInputError("Type a phrase to segment, e.g. 'small bright nodule'.")
    progress(0, 5, "loading CLIP")
    clip = engine.clip(req.clip, req.device, progress)
    progress(1, 5, "patch-text similarity")
    heatmap, grid = patch_text_similarity(clip, image, text)
    region = region_prompt(heatmap, req.threshold, req.n_points)
    progress(2, 5, "region chosen; segmenting")
    seg = segment(engine, SegmentRequest(image, req.model, boxes_xyxy=[region.box_xyxy],
                                         points_xy=region.points_xy.tolist(), point_labels=[1] * len(region.points_xy),
                                         multimask=req.multimask, **req.embedding_options()),
                  lambda done, total, step="": progress(2 + (done if total else 0), 5, step))
    progress(5, 5, "done")
    steps = [
        {"step": "similarity", "method": "patch-text cosine similarity", "text": text, **clip.provenance(),
         "grid_shape": list(np.shape(grid))},
        {"step": "region", "rule": "highest heatmap sum over connected regions >= threshold", **region.to_dict()},
        {"step": "sam", **seg.provenance.to_dict(), "prompts": seg.prompts()},
    ]
    seg.notes.insert(0, f"prompts from the phrase {text!r}: box {tuple(round(v, 1) for v in region.box_xyxy)}, "
                        f"{len(region.points_xy)} positive point(s)")
    return TextSegmentResult(text, seg, np.asarray(heatmap, np.float32), np.asarray(grid, np.float32), region, steps)
