"""The one place where napari (row, col) and drawing/SAM (x, y) coordinates meet.

Both frames are continuous pixel coordinates with pixel centres at integers:
pixel ``image[r, c]`` is centred on ``(row, col) = (r, c)`` and on ``(x, y) = (c, r)``.
"""

from __future__ import annotations

import numpy as np


def rc_to_xy(points_rc) -> np.ndarray:
    """Swap the last axis of ``(..., 2)`` (row, col) points to (x, y). Returns float64."""
    pts = np.asarray(points_rc, dtype=np.float64)
    if pts.shape[-1] != 2:
        raise ValueError(f"points must have a last axis of 2 (row, col); got shape {pts.shape}")
    return pts[..., ::-1].copy()


def xy_to_rc(points_xy) -> np.ndarray:
    """Swap the last axis of ``(..., 2)`` (x, y) points to (row, col). Returns float64."""
    return rc_to_xy(points_xy)


def box_xyxy_from_vertices_rc(vertices_rc) -> tuple[float, float, float, float]:
    """Axis-aligned bounding box ``(x0, y0, x1, y1)`` of ``(N, 2)`` (row, col) vertices."""
    xy = rc_to_xy(vertices_rc).reshape(-1, 2)
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def scale_xy(points_xy, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Map (x, y) points from an image of shape ``from_hw`` onto the same image resized to ``to_hw``.

    Pixel edges map onto pixel edges: ``x' = (x + 0.5) * W'/W - 0.5``.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    sx = to_hw[1] / from_hw[1]
    sy = to_hw[0] / from_hw[0]
    out = np.empty_like(pts)
    out[..., 0] = (pts[..., 0] + 0.5) * sx - 0.5
    out[..., 1] = (pts[..., 1] + 0.5) * sy - 0.5
    return out


def clip_box_xyxy(box_xyxy, hw: tuple[int, int]) -> tuple[tuple[float, float, float, float], bool]:
    """Clip ``(x0, y0, x1, y1)`` to the pixel centres of an image of shape ``hw``; sort the corners.

    Returns the clipped box and whether anything was cut off.  Raises
    :class:`VipInputError` when the box has zero area, or none of it lies on the image.
    """
    from .errors import VipInputError

    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        raise VipInputError(f"Box {tuple(box_xyxy)} has a non-finite coordinate; give four numbers X0 Y0 X1 Y1.")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise VipInputError(
            f"Box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) has zero area; drag a box with width and height."
        )
    h, w = hw
    if x1 < -0.5 or y1 < -0.5 or x0 > w - 0.5 or y0 > h - 0.5:
        raise VipInputError(
            f"Box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) lies entirely outside the {w}x{h} (width x height) image."
        )
    cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
    cx1, cy1 = min(x1, w - 1.0), min(y1, h - 1.0)
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
        raise VipInputError(
            f"Box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) covers no area of the {w}x{h} image once clipped to it."
        )
    return (cx0, cy0, cx1, cy1), clipped
