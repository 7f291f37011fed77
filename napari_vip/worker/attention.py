"""Attention maps with and without visual markers: the request, the result and the handler.

Conditions follow :mod:`napari_vip.worker.classify`: ``none`` (the 256x256 render without a marker)
and one per marker (``"1: circle"``), each rendered with :func:`napari_vip.core.markers.render_marker`
and compared with the class prompt that classify would use for it (marker phrase included).

Frames: every map is in the (row, col) pixel frame of the full image the request carries, except for
``crop`` markers: the model then sees only the crop, so their map is in the crop's frame, placed at
``origin_rc`` (row, col of the crop's pixel (0, 0) in the full image).  The focus fraction of a crop
condition is computed in the crop's frame (the box shifted there), and a crop condition gets no
difference map (its map and the baseline's are normalised over different regions); the result notes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..core.coords import clip_box_xyxy
from ..core.errors import VipInputError
from ..core.focus import Focus, focus_in_box, shift_box_xyxy
from ..core.markers import Marker, crop_box
from ..core.paper_render import paper_crop_box
from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES, build_prompt, check_classes
from ..core.recipes import GUI_RECIPE, recipe_provenance
from ..models.attention import METHODS
from ..models.spec import ModelSpec
from .classify import condition_suffix, marker_conditions, rendered_images, with_clipped_markers
from .engine import handles
from .protocol import Provenance


@dataclass
class AttentionRequest:
    """Attention maps of one class for one image, without a marker and with each marker.

    Attributes
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8, the windowed plane the user sees.
    markers : list of Marker
        Boxes in (x, y) pixels of ``image_rgb``.
    class_name : str
        Must be one of ``classes``.
    classes : list of str
        The candidate findings (for the class's probability, as classify computes it).
    method : str
        ``rollout``, ``gradcam`` or ``similarity``.
    template, modality, marker_text
        Prompt settings, as in :class:`~napari_vip.worker.classify.ClassifyRequest`.
    include_baseline : bool
        Also compute the map without a marker (condition ``none``).
    recipe, notes
        As in :class:`~napari_vip.worker.classify.ClassifyRequest`.
    """

    image_rgb: np.ndarray
    markers: list[Marker]
    class_name: str
    classes: list[str]
    method: str
    model: ModelSpec
    template: str = DEFAULT_TEMPLATE
    modality: str = DEFAULT_MODALITY
    marker_text: tuple[str, ...] = tuple(SUFFIXES)
    include_baseline: bool = True
    device: str = "auto"
    recipe: str = GUI_RECIPE
    notes: list[str] = field(default_factory=list)


@dataclass
class AttentionCondition:
    """One condition's map.

    Attributes
    ----------
    heatmap : np.ndarray
        ``(h, w)`` float32 in [0, 1]: the full image's frame, or the crop's for ``crop`` markers.
    grid : np.ndarray
        ``(gh, gw)`` float32 raw values per patch.
    origin_rc : (int, int)
        (row, col) in the full image of the heatmap's pixel (0, 0).
    focus : Focus or None
        Share of the map's mass in the marker's box; ``None`` for the baseline (no box).
    score : float or None
        Cosine similarity of the image embedding with ``prompt``.
    probability : float
        The class's zero-shot probability over ``classes`` for this condition.
    """

    name: str
    marker: Marker | None
    prompt: str
    heatmap: np.ndarray
    grid: np.ndarray
    origin_rc: tuple[int, int]
    focus: Focus | None
    score: float | None
    probability: float
    notes: list[str] = field(default_factory=list)

    @property
    def frame(self) -> str:
        return "crop" if self.marker is not None and self.marker.style == "crop" else "image"

    def to_dict(self) -> dict:
        return {"condition": self.name, "marker": self.marker.to_dict() if self.marker else None,
                "prompt": self.prompt, "frame": self.frame, "origin_rc": [int(v) for v in self.origin_rc],
                "shape_hw": [int(v) for v in self.heatmap.shape], "grid_hw": [int(v) for v in self.grid.shape],
                "grid": self.grid.astype(float).round(6).tolist(),
                "focus": self.focus.to_dict() if self.focus else None,
                "score": self.score, "probability": self.probability, "notes": list(self.notes)}


@dataclass
class AttentionResult:
    class_name: str
    classes: list[str]
    method: str
    image_hw: tuple[int, int]
    conditions: list[AttentionCondition]
    provenance: Provenance
    notes: list[str] = field(default_factory=list)

    def condition(self, name: str) -> AttentionCondition:
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)

    def difference(self, name: str) -> np.ndarray | None:
        """``(H, W)`` float32 in [-1, 1]: condition ``name``'s map minus the baseline's; ``None`` without a
        baseline, for the baseline itself, or for a crop condition (another frame)."""
        cond = self.condition(name)
        if cond.marker is None or cond.frame != "image":
            return None
        base = next((c for c in self.conditions if c.marker is None), None)
        if base is None:
            return None
        return (cond.heatmap - base.heatmap).astype(np.float32)

    def stack(self) -> np.ndarray:
        """``(K, H, W)`` float32: every condition's map in the full image's frame (crop maps placed at
        their origin, 0 outside), in condition order."""
        out = np.zeros((len(self.conditions),) + tuple(self.image_hw), dtype=np.float32)
        for k, c in enumerate(self.conditions):
            r, col = c.origin_rc
            h, w = c.heatmap.shape
            out[k, r:r + h, col:col + w] = c.heatmap
        return out

    def to_dict(self) -> dict:
        return {"class": self.class_name, "classes": list(self.classes), "method": self.method,
                "image_hw": [int(v) for v in self.image_hw],
                "conditions": [c.to_dict() for c in self.conditions],
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


def check_class(class_name: str, classes) -> tuple[str, list[str]]:
    """The class (stripped) and the checked class list; refuses a class that is not in the list."""
    names = check_classes(classes)
    name = str(class_name or "").strip()
    if not name:
        raise VipInputError(f"Pick the class to explain, one of: {', '.join(names)}.")
    if name not in names:
        match = [c for c in names if c.casefold() == name.casefold()]
        if match:
            return match[0], names
        raise VipInputError(f"Class {name!r} is not in the current list ({', '.join(names)}); pick one of them "
                            "or add it to the findings.")
    return name, names


@handles(AttentionRequest)
def attention(engine, req: AttentionRequest, progress) -> AttentionResult:
    req, notes = with_clipped_markers(req)
    import torch

    from ..models.attention import check_method, compute_map

    class_name, classes = check_class(req.class_name, req.classes)
    if req.method not in METHODS:
        raise VipInputError(f"Unknown attention method {req.method!r}; choose one of {', '.join(METHODS)}.")
    image = np.asarray(req.image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise VipInputError(f"The image must be (H, W, 3) uint8; got {image.shape} {image.dtype}.")
    hw = image.shape[:2]
    conditions = marker_conditions(req, "map")
    total = len(conditions) + 2
    progress(0, total, "loading model")
    clip = engine.clip(req.model, req.device, progress)
    check_method(clip.model, req.method)
    progress(1, total, "rendering markers")
    images = rendered_images(req, conditions, progress)
    ci = classes.index(class_name)
    results: list[AttentionCondition] = []
    for k, ((name, marker), rendered) in enumerate(zip(conditions, images)):
        prompts = [build_prompt(c, condition_suffix(req, marker), req.template, req.modality) for c in classes]
        cond_notes: list[str] = []
        origin = (0, 0)
        if marker is not None and marker.style == "crop":
            box, _ = clip_box_xyxy(marker.box_xyxy, hw)
            x0, y0, _, _ = paper_crop_box(box, hw) if req.recipe == "paper" else crop_box(box, hw)
            origin = (int(y0), int(x0))
            out_hw = rendered.shape[:2]
            cond_notes.append("crop: the map is in the crop's frame (placed at its origin); no difference map")
        else:
            out_hw = hw
        amap = compute_map(clip, rendered, req.method, prompts[ci], out_hw=out_hw)
        cond_notes += amap.notes
        focus = None
        if marker is not None:
            box, _ = clip_box_xyxy(marker.box_xyxy, hw)
            focus = focus_in_box(amap.heatmap, shift_box_xyxy(box, origin))
            if focus.fraction is None:
                cond_notes.append("the map has no mass, so it has no focus fraction")
        probs = clip.probabilities(torch.from_numpy(amap.embedding)[None].to(clip.device),
                                   clip.encode_texts(prompts))[0]
        results.append(AttentionCondition(name, marker, prompts[ci], amap.heatmap, amap.grid, origin, focus,
                                          amap.score, float(probs[ci]), cond_notes))
        progress(2 + k, total, f"{req.method} map {k + 1}/{len(conditions)}")
    progress(total, total, "done")
    prov = Provenance(__version__, **clip.provenance(),
                      extra={"method": req.method, "class": class_name, "template": req.template,
                             "modality": req.modality, "marker_text": list(req.marker_text),
                             **recipe_provenance(req.recipe)})
    return AttentionResult(class_name, classes, req.method, (int(hw[0]), int(hw[1])), results, prov, notes)
