"""Marker focus: how much of a heatmap's mass lies inside the marker's box.

Pure numpy.  A heatmap is an ``(H, W)`` array of non-negative weights in the (row, col) frame of an
image; a box is ``(x0, y0, x1, y1)`` in the same image's pixels (pixel centres at integers, see
:mod:`napari_vip.core.coords`).  A pixel belongs to the box when its centre lies inside it, edges
included, so the box drawn over pixel edges ``(9.5, 9.5, 20.5, 20.5)`` holds pixels 10..20.

The focus fraction alone depends on the box size: a uniform map gives exactly the box's share of the
image.  :class:`Focus` therefore also carries that share (``area_fraction``) and their ratio
(``enrichment``): above 1 means the map is concentrated on the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import VipInputError


@dataclass(frozen=True)
class Focus:
    """Share of a map's mass inside a box.

    Attributes
    ----------
    fraction : float or None
        ``sum(map[box]) / sum(map)`` in [0, 1]; ``None`` when the map has no mass (all zeros).
    area_fraction : float
        Share of the map's pixels inside the box: the ``fraction`` of a uniform map.
    enrichment : float or None
        ``fraction / area_fraction``; 1 means no more attention on the box than a uniform map.
    """

    fraction: float | None
    area_fraction: float
    enrichment: float | None

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "area_fraction": self.area_fraction, "enrichment": self.enrichment}


def box_mask(hw: tuple[int, int], box_xyxy) -> np.ndarray:
    """``(H, W)`` bool: pixels whose centres lie inside ``box_xyxy = (x0, y0, x1, y1)`` (edges included).

    Corners may come in any order; a box partly outside the image keeps its part on the image.
    """
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not np.all(np.isfinite([x0, y0, x1, y1])):
        raise VipInputError(f"Box {tuple(box_xyxy)} has a non-finite coordinate; give four numbers X0 Y0 X1 Y1.")
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    h, w = (int(v) for v in hw)
    c0, c1 = max(int(np.ceil(x0)), 0), min(int(np.floor(x1)), w - 1)
    r0, r1 = max(int(np.ceil(y0)), 0), min(int(np.floor(y1)), h - 1)
    mask = np.zeros((h, w), dtype=bool)
    if r1 >= r0 and c1 >= c0:
        mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


def focus_in_box(heatmap: np.ndarray, box_xyxy) -> Focus:
    """Fraction of ``heatmap``'s mass inside ``box_xyxy``.

    Parameters
    ----------
    heatmap : np.ndarray
        ``(H, W)`` non-negative real weights (an attention map in [0, 1]); NaN pixels count as 0.
    box_xyxy : (float, float, float, float)
        ``(x0, y0, x1, y1)`` in the heatmap's pixel frame.

    Raises
    ------
    VipInputError
        The heatmap is not 2D, has negative values, or the box covers no pixel centre of it.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise VipInputError(f"A heatmap must be (H, W); got shape {heat.shape}.")
    heat = np.where(np.isfinite(heat), heat, 0.0)
    if (heat < 0).any():
        raise VipInputError("The focus fraction needs a non-negative heatmap (a difference map has negative values).")
    mask = box_mask(heat.shape, box_xyxy)
    inside = int(mask.sum())
    if inside == 0:
        raise VipInputError(
            f"Box {tuple(round(float(v), 2) for v in box_xyxy)} covers no pixel of the {heat.shape[1]}x{heat.shape[0]} "
            "map; draw the marker over the image."
        )
    area = inside / heat.size
    total = float(heat.sum())
    if total <= 0.0:
        return Focus(None, area, None)
    fraction = float(heat[mask].sum()) / total
    return Focus(fraction, area, fraction / area)


def shift_box_xyxy(box_xyxy, origin_rc) -> tuple[float, float, float, float]:
    """The box in the frame of a sub-image whose pixel ``(0, 0)`` is ``origin_rc = (row, col)`` of the full image."""
    r, c = (float(v) for v in origin_rc)
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    return x0 - c, y0 - r, x1 - c, y1 - r
