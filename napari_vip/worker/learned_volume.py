"""Every slice of a volume segmented by a text-free VLSM (a CoTexNet folder): "Segment as learned" on a stack.

Each slice is windowed as the viewer displays it (:func:`napari_vip.models.propagation.displayed_slices`, the 2D
dock's model input) and segmented on its own with the model's text-free prediction; the masks are stacked back in
the volume's axis order.  Progress per slice; a cancel stops between slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..core.errors import VipInputError
from .engine import handles
from .protocol import Provenance


@dataclass
class LearnedVolumeRequest:
    """Segment the slices of ``volume`` along ``axis`` with the text-free model ``vlsm``.

    Attributes
    ----------
    volume : np.ndarray
        ``(Z, Y, X)`` scalar volume (any numeric dtype), slices along ``axis``.
    vlsm : VlsmSpec
        A folder written by ``napari-vip finetune --method cotexnet`` (a model with ``needs_text`` False).
    axis : int
        The slice axis (the one the viewer scrolls).
    window : (float, float) or None
        Display window (default: the volume's finite min/max); ``invert`` for MONOCHROME1.
    slice_range : (int, int) or None
        Inclusive first and last slice; default all.
    """

    volume: np.ndarray
    vlsm: object
    axis: int = 0
    window: tuple | None = None
    invert: bool = False
    slice_range: tuple | None = None
    device: str = "auto"


@dataclass
class LearnedVolumeResult:
    """``mask``: bool of the volume's shape (slices outside ``slices`` empty); ``areas``: pixels per slice segmented."""

    mask: np.ndarray
    areas: list
    slices: tuple
    provenance: Provenance

    @property
    def untrained(self) -> bool:
        return self.provenance.untrained

    def to_dict(self) -> dict:
        return {"shape": list(self.mask.shape), "slices": list(self.slices), "areas": list(self.areas),
                "voxels": int(self.mask.sum()), "provenance": self.provenance.to_dict()}


@handles(LearnedVolumeRequest)
def learned_volume(engine, req: LearnedVolumeRequest, progress) -> LearnedVolumeResult:
    from ..models.propagation import displayed_slices
    from .vlsm import vlsm_model

    vol = np.asarray(req.volume)
    if vol.ndim != 3:
        raise VipInputError(f"Segmenting every slice needs a (Z, Y, X) volume; got shape {vol.shape}.")
    axis = int(req.axis) % 3
    stack = np.moveaxis(vol, axis, 0)
    z = stack.shape[0]
    first, last = req.slice_range if req.slice_range is not None else (0, z - 1)
    first, last = max(0, int(first)), min(z - 1, int(last))
    if first > last:
        raise VipInputError(f"Slice range {req.slice_range} is outside the volume (0..{z - 1}).")
    progress(0, last - first + 1, "loading the model")
    model = vlsm_model(engine, req.vlsm, req.device, progress)
    if model.needs_text:
        raise VipInputError(f"{req.vlsm.describe()} segments what a text names; every-slice segmentation without "
                            "text needs a model from napari-vip finetune --method cotexnet.")
    rgb = displayed_slices(stack[first:last + 1], req.window, req.invert)
    out = np.zeros(stack.shape, dtype=bool)
    areas = []
    for k in range(first, last + 1):
        out[k] = model.predict(rgb[k - first]).mask
        areas.append(int(out[k].sum()))
        progress(k - first + 1, last - first + 1, f"slice {k}: {areas[-1]} px")
    prov = Provenance(__version__, model=model.provenance(), weights_sha256=model.sha256, untrained=model.untrained,
                      device=str(model.device), extra={"method": model.method, "axis": axis,
                                                       "window": None if req.window is None else list(req.window)})
    return LearnedVolumeResult(np.moveaxis(out, 0, axis), areas, (first, last), prov)
