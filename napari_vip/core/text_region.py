"""Text to mask, the model-free step: from a patch–text similarity map to SAM prompts.

The heatmap (``(H, W)`` float in [0, 1], see :func:`napari_vip.models.attention.patch_text_similarity`) is
thresholded at ``threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.5 of the normalised range); its connected
regions (8-connectivity) are scored by the *sum* of the heatmap over the region (strong and large beats weak
or tiny), and the highest-scoring one becomes the prompt:

- box: the region's bounding box ``(x0, y0, x1, y1)`` in pixel centres (a one-pixel region gets a 1-pixel box
  around it so the box has area);
- positive points: the heatmap's peak inside the region, then (with ``n_points >= 2``) the region's pixel
  nearest its centroid, if it is another pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import VipInputError

DEFAULT_THRESHOLD = 0.5


@dataclass
class RegionPrompt:
    """The chosen region and the SAM prompts made from it.

    Attributes
    ----------
    region : np.ndarray
        ``(H, W)`` bool, the chosen connected region.
    box_xyxy : (float, float, float, float)
    points_xy : np.ndarray
        ``(N, 2)`` float64 positive points ``(x, y)``.
    score : float
        Sum of the heatmap over the region.
    n_regions : int
        How many regions passed the threshold.
    """

    region: np.ndarray
    box_xyxy: tuple[float, float, float, float]
    points_xy: np.ndarray
    score: float
    n_regions: int
    threshold: float

    def to_dict(self) -> dict:
        return {"box_xyxy": [float(v) for v in self.box_xyxy], "points_xy": self.points_xy.tolist(),
                "score": float(self.score), "area": int(self.region.sum()), "n_regions": int(self.n_regions),
                "threshold": float(self.threshold)}


def region_prompt(heatmap: np.ndarray, threshold: float = DEFAULT_THRESHOLD, n_points: int = 1) -> RegionPrompt:
    """Pick the highest-scoring connected region of ``heatmap`` and make a box and positive points from it.

    Raises
    ------
    VipInputError
        Heatmap not 2D or not finite, threshold outside (0, 1), or no pixel reaching the threshold.
    """
    from skimage.measure import label

    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2:
        raise VipInputError(f"The similarity map must be 2D (H, W); got shape {heat.shape}.")
    if not np.isfinite(heat).all():
        raise VipInputError("The similarity map has NaN or infinite values.")
    if not 0.0 < threshold < 1.0:
        raise VipInputError(f"Region threshold {threshold} must lie between 0 and 1.")
    lab = label(heat >= threshold, connectivity=2)
    n = int(lab.max())
    if n == 0:
        raise VipInputError("No part of the image resembles the phrase enough (the similarity map is flat); "
                            "try another phrase or draw a box.")
    sums = np.bincount(lab.ravel(), weights=heat.ravel(), minlength=n + 1)
    sums[0] = -np.inf
    best = int(np.argmax(sums))
    region = lab == best
    rows, cols = np.nonzero(region)
    x0, x1, y0, y1 = float(cols.min()), float(cols.max()), float(rows.min()), float(rows.max())
    h, w = heat.shape
    if x1 == x0:
        x0, x1 = max(x0 - 1, 0.0), min(x1 + 1, w - 1.0)
    if y1 == y0:
        y0, y1 = max(y0 - 1, 0.0), min(y1 + 1, h - 1.0)
    masked = np.where(region, heat, -np.inf)
    pr, pc = np.unravel_index(int(np.argmax(masked)), heat.shape)
    points = [(float(pc), float(pr))]
    if n_points >= 2:
        cy, cx = rows.mean(), cols.mean()
        k = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
        if (cols[k], rows[k]) != (pc, pr):
            points.append((float(cols[k]), float(rows[k])))
    return RegionPrompt(region, (x0, y0, x1, y1), np.asarray(points, dtype=np.float64), float(sums[best]), n,
                        float(threshold))
