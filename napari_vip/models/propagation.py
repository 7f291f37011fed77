"""Propagate one object's mask through the slices of a volume: SAM 2 video tracking or SAM 1 slice by slice.

Both propagators are generators that yield one :class:`SliceMask` per slice as it is done, so the caller
(the worker) reports progress, notices a cancel between slices and keeps every slice done so far.

Coordinates: the volume is ``(Z, H, W)`` with the propagation axis first (move the axis in view there with
:func:`slices_first`); boxes are ``(x0, y0, x1, y1)`` and points ``(x, y)`` in pixels of a slice (x = column).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import VipInputError
from ..core.image import is_colour_picture


@dataclass
class SlicePrompt:
    """The user's prompt on one slice: a box, clicks, and/or a committed ``(H, W)`` bool mask."""

    slice_index: int
    box_xyxy: tuple | None = None
    points_xy: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    mask: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"slice": int(self.slice_index),
                "box_xyxy": None if self.box_xyxy is None else [float(v) for v in self.box_xyxy],
                "points_xy": [] if self.points_xy is None else np.asarray(self.points_xy).tolist(),
                "point_labels": [] if self.point_labels is None else np.asarray(self.point_labels).astype(int).tolist(),
                "mask_area": None if self.mask is None else int(np.count_nonzero(self.mask))}


@dataclass
class SliceMask:
    """One slice's result: ``mask`` ``(H, W)`` bool; ``score`` the model's confidence (SAM 1: predicted IoU;
    SAM 2: object score logit); ``prompt`` what was given to the model on that slice (SAM 1); ``logits``
    ``(H, W)`` float32 mask logits at the slice's size (SAM 2)."""

    slice_index: int
    mask: np.ndarray
    score: float
    direction: str
    prompt: dict = field(default_factory=dict)
    logits: np.ndarray | None = None


def refuse_colour_picture(shape) -> None:
    """Raise the one message every volume tool gives for a colour picture (``(H, W, 3|4)``)."""
    raise VipInputError(f"Propagation needs a gray volume (slices, rows, columns); this is a colour picture of "
                        f"shape {tuple(shape)} (rows, columns, channels), not a stack of slices. Segment it as a 2D "
                        "image, or open a CT/MR series or a NIfTI volume to propagate.")


def check_volume(volume, axis: int = 0) -> np.ndarray:
    """A ``(Z, H, W)`` view of ``volume`` with ``axis`` first; refuses 2D images, colour pictures
    (``(H, W, 3|4)`` uint8, see :func:`~napari_vip.core.image.is_colour_picture`) and 4D+ arrays."""
    arr = np.asarray(volume)
    if is_colour_picture(arr):
        refuse_colour_picture(arr.shape)
    if arr.ndim == 2:
        raise VipInputError("Propagation needs a volume (a stack of slices); this image is 2D. Segment it without "
                            "propagation, or open the CT/MR series as a volume.")
    if arr.ndim != 3:
        raise VipInputError(f"Propagation works on a 3D (slices, rows, columns) volume; this layer is {arr.ndim}D "
                            f"{arr.shape}. Choose one channel or time point first.")
    if not -3 <= axis < 3:
        raise VipInputError(f"Slice axis {axis} does not exist in a 3D volume.")
    if arr.shape[axis] < 2:
        raise VipInputError("The volume has a single slice along the chosen axis; nothing to propagate through.")
    return slices_first(arr, axis)


def slices_first(volume: np.ndarray, axis: int) -> np.ndarray:
    """``volume`` with ``axis`` moved first (a view)."""
    return np.moveaxis(volume, axis, 0)


def volume_window(volume: np.ndarray, window=None) -> tuple[float, float]:
    """``window`` as floats, default the volume's finite min/max (refused when every voxel is NaN or infinite)."""
    if window is not None:
        return float(window[0]), float(window[1])
    data = np.asarray(volume)
    finite = np.isfinite(data)
    if not finite.any():
        raise VipInputError("Every voxel of the volume is NaN or infinite.")
    return float(data[finite].min()), float(data[finite].max())


def volume_to_rgb(volume: np.ndarray, window=None) -> np.ndarray:
    """``(Z, H, W, 3)`` uint8 slices: ``volume`` clipped to ``window`` (default its finite min/max) and scaled
    to 0..255 over the whole volume (MedSAM2's CT recipe; the same scale on every slice)."""
    data = np.asarray(volume, dtype=np.float32)
    low, high = volume_window(data, window)
    if not high > low:
        high = low + 1.0
    finite = np.isfinite(data)
    scaled = (np.clip(np.where(finite, data, low), low, high) - low) / (high - low) * 255.0
    u8 = scaled.astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=-1)


def displayed_slices(volume: np.ndarray, window=None, invert: bool = False) -> np.ndarray:
    """``(Z, H, W, 3)`` uint8 slices windowed as the viewer displays them: each slice through
    :func:`~napari_vip.core.image.to_model_rgb` with ``window`` (default the volume's finite min/max), exactly the
    2D dock's model input, so per-slice SAM embeddings are shared with the dock's cache."""
    from ..core.image import to_model_rgb

    low_high = volume_window(volume, window)
    return np.stack([to_model_rgb(sl, contrast_limits=low_high, invert=invert, rgb=False).rgb
                     for sl in np.asarray(volume)])


def check_prompt(prompt: SlicePrompt, volume: np.ndarray) -> None:
    """Refuse a prompt outside the volume, a box on an empty (constant) region, or an empty mask."""
    z, h, w = volume.shape[:3]
    k = prompt.slice_index
    if not 0 <= k < z:
        raise VipInputError(f"Slice {k} is outside the volume (0..{z - 1}).")
    if prompt.box_xyxy is None and prompt.mask is None and (prompt.points_xy is None or not len(prompt.points_xy)):
        raise VipInputError(f"Slice {k}: give a box, a click or a committed mask to propagate from.")
    plane = volume[k]
    if prompt.box_xyxy is not None:
        x0, y0, x1, y1 = (float(v) for v in prompt.box_xyxy)
        c0, c1 = int(np.clip(np.floor(min(x0, x1)), 0, w - 1)), int(np.clip(np.ceil(max(x0, x1)), 0, w - 1))
        r0, r1 = int(np.clip(np.floor(min(y0, y1)), 0, h - 1)), int(np.clip(np.ceil(max(y0, y1)), 0, h - 1))
        region = plane[r0:r1 + 1, c0:c1 + 1]
        if region.size == 0 or float(np.ptp(region)) == 0.0:
            raise VipInputError(f"The box on slice {k} covers an empty region (every pixel has the same value); "
                                "draw it around the object on a slice where the object is visible.")
    if prompt.mask is not None:
        m = np.asarray(prompt.mask, bool)
        if m.shape != (h, w):
            raise VipInputError(f"The mask on slice {k} is {m.shape}; the slice is {(h, w)}.")
        if not m.any():
            raise VipInputError(f"The mask on slice {k} is empty; commit a mask first or draw a box.")


def slice_order(key: int, z: int, slice_range=None) -> tuple[list[int], list[int]]:
    """Forward slices ``key..hi`` and backward slices ``key-1..lo`` within ``slice_range`` ``(lo, hi)``
    (inclusive; default the whole volume)."""
    lo, hi = (0, z - 1) if slice_range is None else (int(slice_range[0]), int(slice_range[1]))
    lo, hi = max(0, min(lo, hi)), min(z - 1, max(lo, hi))
    if not lo <= key <= hi:
        raise VipInputError(f"Slice {key} is outside the slice range {lo}..{hi} you set.")
    return list(range(key, hi + 1)), list(range(key - 1, lo - 1, -1))


def mask_box_xyxy(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight ``(x0, y0, x1, y1)`` box (pixel centres) of a ``(H, W)`` bool mask; ``None`` when empty."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return None
    return float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())


# -- SAM 2: slices as video frames ---------------------------------------------------------------------------
def sam2_state(net, frames, height: int, width: int) -> dict:
    """The inference state ``SAM2VideoPredictor.init_state`` builds, from in-memory ``(Z, 3, S, S)`` frames
    instead of a JPEG folder (``height, width``: the slices' size, for the output masks)."""
    import torch

    device = net.device
    state = {
        "images": frames, "num_frames": len(frames), "offload_video_to_cpu": False,
        "offload_state_to_cpu": False, "video_height": int(height), "video_width": int(width),
        "device": device, "storage_device": device, "point_inputs_per_obj": {}, "mask_inputs_per_obj": {},
        "cached_features": {}, "constants": {}, "obj_id_to_idx": OrderedDict(), "obj_idx_to_id": OrderedDict(),
        "obj_ids": [], "output_dict_per_obj": {}, "temp_output_dict_per_obj": {}, "frames_tracked_per_obj": {},
    }
    with torch.inference_mode():
        net._get_image_feature(state, frame_idx=0, batch_size=1)
    return state


def add_sam2_prompt(net, state: dict, prompt: SlicePrompt, obj_id: int = 1) -> None:
    """Give ``prompt`` to the video predictor (a mask wins over a box/clicks on the same slice)."""
    import torch

    with torch.inference_mode():
        if prompt.mask is not None:
            net.add_new_mask(state, frame_idx=prompt.slice_index, obj_id=obj_id, mask=np.asarray(prompt.mask, bool))
            return
        pts = None if prompt.points_xy is None or not len(prompt.points_xy) else np.asarray(prompt.points_xy,
                                                                                           np.float32)
        labels = None if pts is None else np.asarray(prompt.point_labels, np.int32)
        net.add_new_points_or_box(state, frame_idx=prompt.slice_index, obj_id=obj_id, points=pts, labels=labels,
                                  box=None if prompt.box_xyxy is None else np.asarray(prompt.box_xyxy, np.float32))


def propagate_sam2(model, slices_rgb: np.ndarray, prompts: list[SlicePrompt], slice_range=None,
                   stop_when_empty: bool = True):
    """Track one object through ``(Z, H, W, 3)`` uint8 slices with SAM 2's video predictor.

    Every prompt is added on its slice (a correction is one more prompt); tracking runs forward from the
    earliest prompted slice to the end of ``slice_range``, then backward from it, as
    ``SAM2VideoPredictor.propagate_in_video`` (``reverse=False`` then ``True``).  With ``stop_when_empty`` a
    direction stops at the first slice whose mask is empty (after the prompted slices).

    Yields
    ------
    SliceMask
    """
    import torch

    net = model.net
    z, h, w = slices_rgb.shape[:3]
    first = min(p.slice_index for p in prompts)
    last = max(p.slice_index for p in prompts)
    forward, backward = slice_order(first, z, slice_range)
    if last > forward[-1]:
        raise VipInputError(f"Slice {last} is outside the slice range you set.")
    prompted = {p.slice_index for p in prompts}
    state = sam2_state(net, model.frames_tensor(slices_rgb), h, w)
    for p in prompts:
        add_sam2_prompt(net, state, p)
    for reverse, order in ((False, forward), (True, [first] + backward)):
        if reverse and not backward:
            break
        with torch.inference_mode():
            runs = net.propagate_in_video(state, start_frame_idx=first, max_frame_num_to_track=len(order) - 1,
                                          reverse=reverse)
            for frame_idx, _, masks in runs:
                if reverse and frame_idx == first:
                    continue
                logits = masks[0, 0].float().cpu().numpy()
                mask = logits > 0
                yield SliceMask(int(frame_idx), mask, object_score(state, frame_idx),
                                "backward" if reverse else "forward", logits=logits)
                if stop_when_empty and not mask.any() and frame_idx not in prompted and (reverse or frame_idx > last):
                    break


def object_score(state: dict, frame_idx: int) -> float:
    """SAM 2's object score logit on ``frame_idx`` (> 0: the object is present)."""
    out = state["output_dict_per_obj"][0]
    entry = out["cond_frame_outputs"].get(frame_idx) or out["non_cond_frame_outputs"].get(frame_idx)
    if entry is None or entry.get("object_score_logits") is None:
        return float("nan")
    return float(entry["object_score_logits"].reshape(-1)[0])


# -- SAM 1: slice by slice -----------------------------------------------------------------------------------
def propagate_sam1(model, embed, slices_rgb: np.ndarray, prompts, slice_range=None,
                   iou_threshold: float = 0.7, stop_when_empty: bool = True):
    """Propagate with a 2D SAM: segment the prompted slice, then on each next slice prompt with the previous
    slice's mask box and its low-resolution logits; stop a direction when SAM's predicted IoU falls below
    ``iou_threshold`` or the mask is empty.

    Parameters
    ----------
    model : napari_vip.models.sam.SamModel
        (or any model with the same ``decode``).
    embed : callable
        ``embed(slice_index) -> SamEmbedding`` (the worker passes its cached embedding lookup).
    slices_rgb : (Z, H, W, 3) uint8
    prompts : SlicePrompt or list of SlicePrompt
        The last one is where this run starts (a correction); the slices of the earlier ones are kept as they
        were: each direction stops before reaching one of them.

    Yields
    ------
    SliceMask
        ``prompt`` holds the box and whether logits were passed on each slice.
    """
    prompts = [prompts] if isinstance(prompts, SlicePrompt) else list(prompts)
    prompt = prompts[-1]
    anchors = {p.slice_index for p in prompts[:-1]} - {prompt.slice_index}
    z = slices_rgb.shape[0]
    forward, backward = slice_order(prompt.slice_index, z, slice_range)
    k = prompt.slice_index
    if prompt.mask is not None:
        mask0 = np.asarray(prompt.mask, bool)
        first = SliceMask(k, mask0, 1.0, "key", {"mask": True})
        logits0 = None
    else:
        out = model.decode(embed(k), boxes_xyxy=None if prompt.box_xyxy is None else [prompt.box_xyxy],
                           points_xy=prompt.points_xy, point_labels=prompt.point_labels, multimask=False)
        first = SliceMask(k, out.masks[0, 0], float(out.scores[0, 0]), "key", prompt.to_dict())
        logits0 = out.low_res_logits[0, :1]
    yield first
    for direction, order in (("forward", forward[1:]), ("backward", backward)):
        prev_mask, prev_logits = first.mask, logits0
        for j in order:
            box = mask_box_xyxy(prev_mask)
            if box is None or j in anchors:
                break
            out = model.decode(embed(j), boxes_xyxy=[box], mask_logits=prev_logits, multimask=False)
            mask, score = out.masks[0, 0], float(out.scores[0, 0])
            issued = {"box_xyxy": list(box), "mask_logits": prev_logits is not None}
            if score < iou_threshold or (stop_when_empty and not mask.any()):
                break
            yield SliceMask(j, mask, score, direction, issued)
            prev_mask, prev_logits = mask, out.low_res_logits[0, :1]
