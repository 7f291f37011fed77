"""Volume requests: propagate an object through the slices, and embed a volume's slices from the one in view
outward.

Volumes are ``(Z, Y, X)`` arrays (any real dtype, values as read: Hounsfield for CT); ``axis`` is the slice
axis in view.  Prompts are in pixels of a slice with that axis removed: boxes ``(x0, y0, x1, y1)``, points
``(x, y)``, x = the slice's column.  Masks come back in the volume's own axis order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .. import __version__
from ..core.annotations import bounding_box
from ..core.errors import VipInputError
from ..models.propagation import (
    SlicePrompt,
    check_prompt,
    check_volume,
    displayed_slices,
    propagate_sam1,
    propagate_sam2,
    volume_to_rgb,
    volume_window,
)
from ..models.sam2_family import Sam2Spec
from .engine import handles
from .protocol import Cancelled, Provenance
from .segment import get_embedding, sam_model


@dataclass
class PropagateRequest:
    """Propagate one object from prompts on one or more slices through the volume.

    Attributes
    ----------
    volume : np.ndarray
        ``(Z, Y, X)``.
    prompts : list of SlicePrompt
        The key slice's prompt first; more prompts on other slices are corrections (SAM 2 tracks with all of
        them; the SAM 1 family re-runs slice by slice from the last one given).
    model : SamSpec or Sam2Spec
    axis : int
        Slice axis of ``volume`` (the one the viewer scrolls).
    slice_range : (int, int), optional
        Inclusive first and last slice to reach; default the whole volume.
    window : (float, float), optional
        Window applied before the model sees the slices (as displayed); default the volume's min/max.  SAM 2
        gets MedSAM2's volume scaling (:func:`~napari_vip.models.propagation.volume_to_rgb`); the SAM 1 family
        the 2D dock's model input (:func:`~napari_vip.models.propagation.displayed_slices`), so it reuses the
        embeddings the dock cached.
    invert : bool
        The slices are shown inverted (MONOCHROME1).
    stop_when_empty : bool
        Stop a direction at the first slice where the object vanishes.
    iou_threshold : float
        SAM 1 family: stop where SAM's predicted IoU falls below it.
    """

    volume: np.ndarray
    prompts: list
    model: object
    axis: int = 0
    slice_range: tuple[int, int] | None = None
    window: tuple[float, float] | None = None
    invert: bool = False
    stop_when_empty: bool = True
    iou_threshold: float = 0.7
    device: str = "auto"
    disk_cache: bool = True


@dataclass
class PropagateResult:
    """The propagated object.

    Attributes
    ----------
    mask : np.ndarray
        ``(Z, Y, X)`` bool in the volume's axis order; ``False`` on slices not reached.
    slices : list of int
        Slices (along ``axis``) that hold a result, in the order they were done.
    cancelled : bool
        The user cancelled: ``mask`` holds the slices done before the cancel.
    scores : dict
        ``{slice: score}`` (SAM 1: predicted IoU; SAM 2: object score logit).
    issued : dict
        ``{slice: prompt given to the model}`` (SAM 1 family: the box of the previous slice's mask).
    mask_box : tuple of (int, int), optional
        ``(start, stop)`` per axis of ``mask``: every ``True`` voxel lies inside; ``None`` when the mask is empty.
        The result travels to the viewer with ``mask`` cut to this box and packed to bits (its size is an eighth of
        the object's box, not the volume's) and is whole again on arrival.
    """

    mask: np.ndarray
    slices: list
    cancelled: bool
    scores: dict
    issued: dict
    axis: int
    prompts: list
    seconds: float
    provenance: Provenance
    notes: list[str] = field(default_factory=list)
    mask_box: tuple | None = None

    def box_slices(self) -> tuple[slice, ...] | None:
        """:attr:`mask_box` as slices (``None`` when the mask is empty)."""
        return None if self.mask_box is None else tuple(slice(a, b) for a, b in self.mask_box)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        box = self.box_slices()
        state["mask"] = (self.mask.shape, None if box is None else np.packbits(self.mask[box]))
        return state

    def __setstate__(self, state: dict) -> None:
        shape, bits = state["mask"]
        full = np.zeros(shape, bool)
        if bits is not None:
            box = tuple(slice(a, b) for a, b in state["mask_box"])
            size = int(np.prod([b.stop - b.start for b in box]))
            full[box] = np.unpackbits(bits, count=size).view(bool).reshape(full[box].shape)
        self.__dict__.update(state, mask=full)

    def to_dict(self) -> dict:
        return {"slices": [int(s) for s in self.slices], "cancelled": self.cancelled, "axis": self.axis,
                "voxels": int(self.mask.sum()), "shape": list(self.mask.shape),
                "scores": {str(k): float(v) for k, v in self.scores.items()},
                "prompts": [p.to_dict() for p in self.prompts], "seconds": round(self.seconds, 3),
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained,
                "notes": list(self.notes)}


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    lab = label(mask, connectivity=1)
    if lab.max() <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


@handles(PropagateRequest)
def propagate(engine, req: PropagateRequest, progress) -> PropagateResult:
    vol = check_volume(req.volume, req.axis)
    if not req.prompts:
        raise VipInputError("Propagation needs a prompt (box, clicks or a committed mask) on one slice.")
    prompts = [p if isinstance(p, SlicePrompt) else SlicePrompt(**p) for p in req.prompts]
    for p in prompts:
        check_prompt(p, vol)
    progress(0, 0, "loading the model")
    t0 = time.perf_counter()
    z = vol.shape[0]
    sam2 = isinstance(req.model, Sam2Spec)
    model = sam_model(engine, req.model, req.device, progress)
    if sam2:
        slices_rgb = volume_to_rgb(vol, req.window)
        if req.invert:
            slices_rgb = 255 - slices_rgb
        runs = propagate_sam2(model, slices_rgb, prompts, req.slice_range, req.stop_when_empty)
    else:
        window = volume_window(vol, req.window)
        slices_rgb = displayed_slices(vol, window, req.invert)

        def embed(j):
            return get_embedding(engine, model, slices_rgb[j], window, req.invert, disk=req.disk_cache)[0]

        runs = propagate_sam1(model, embed, slices_rgb, prompts, req.slice_range, req.iou_threshold,
                              req.stop_when_empty)
    out = np.zeros(vol.shape, bool)
    done, scores, issued = [], {}, {}
    cancelled = False
    try:
        progress(0, z, "propagating")
        for sl in runs:
            out[sl.slice_index] = sl.mask
            done.append(sl.slice_index)
            scores[sl.slice_index] = sl.score
            if sl.prompt:
                issued[sl.slice_index] = sl.prompt
            progress(len(done), z, f"slice {sl.slice_index} ({sl.direction})")
    except Cancelled:
        cancelled = True
    notes = []
    if sam2 and model.spec.medsam2 and not cancelled and out.any():
        out = _largest_component(out)
        notes.append("MedSAM2: largest 3D connected component kept")
    if cancelled:
        notes.append(f"cancelled: {len(done)} slice(s) done are kept")
    mask = np.ascontiguousarray(np.moveaxis(out, 0, req.axis))
    box = bounding_box(mask)
    prov = Provenance(__version__, **model.provenance(),
                      extra={"window": req.window, "axis": req.axis, "slice_range": req.slice_range,
                             "method": "sam2-video" if sam2 else "sam-slice-by-slice"})
    return PropagateResult(mask, done, cancelled, scores, issued, req.axis, prompts, time.perf_counter() - t0,
                           prov, notes, None if box is None else tuple((b.start, b.stop) for b in box))


def outward_order(key: int, z: int) -> list[int]:
    """``key, key+1, key-1, key+2, key-2, ...`` within ``0..z-1``: the slice in view first, then outward."""
    order = [key]
    for d in range(1, z):
        order += [j for j in (key + d, key - d) if 0 <= j < z]
    return order


@dataclass
class VolumeEmbedRequest:
    """Compute (or find in the cache) the SAM or SAM 2 image embeddings of a volume's slices, the slice in view
    first and then outward, each cached on disk under its own key (the slice's image signature), so scrolling
    never waits twice.

    A background job: the worker stops it (as replaced) as soon as any other job waits, so prompts are never
    held up; the slices embedded so far stay cached and a new request resumes from them.
    """

    background: ClassVar[bool] = True
    volume: np.ndarray
    slice_index: int
    model: object
    axis: int = 0
    window: tuple[float, float] | None = None
    invert: bool = False
    device: str = "auto"
    disk_cache: bool = True


@dataclass
class VolumeEmbedResult:
    order: list
    sources: dict  # {slice: "memory" | "disk" | "computed"}
    keys: dict
    cancelled: bool
    seconds: float
    provenance: Provenance

    def to_dict(self) -> dict:
        return {"order": self.order, "sources": {str(k): v for k, v in self.sources.items()},
                "cancelled": self.cancelled, "seconds": round(self.seconds, 3),
                "provenance": self.provenance.to_dict(), "untrained": self.provenance.untrained}


@handles(VolumeEmbedRequest)
def embed_volume(engine, req: VolumeEmbedRequest, progress) -> VolumeEmbedResult:
    vol = check_volume(req.volume, req.axis)
    if not 0 <= req.slice_index < vol.shape[0]:
        raise VipInputError(f"Slice {req.slice_index} is outside the volume (0..{vol.shape[0] - 1}).")
    t0 = time.perf_counter()
    model = sam_model(engine, req.model, req.device, progress)
    window = volume_window(vol, req.window)
    order = outward_order(req.slice_index, vol.shape[0])
    sources, keys, cancelled = {}, {}, False
    try:
        for n, j in enumerate(order):
            progress(n, len(order), f"embedding slice {j}")
            rgb = displayed_slices(vol[j:j + 1], window, req.invert)[0]  # the dock's model input of slice j
            _, keys[j], sources[j] = get_embedding(engine, model, rgb, window, req.invert, disk=req.disk_cache)
    except Cancelled:
        cancelled = True
    prov = Provenance(__version__, **model.provenance(), extra={"window": req.window, "axis": req.axis})
    return VolumeEmbedResult(list(sources), sources, keys, cancelled, time.perf_counter() - t0, prov)
