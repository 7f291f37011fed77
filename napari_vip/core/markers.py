"""Visual markers burned into the image, as in Denner et al. (MIDL 2025): the ``displayed`` recipe.

A :class:`Marker` is the user's drawn prompt: a box in image pixels, how to render it (``style``),
its colour and line width.  :func:`render_marker` makes the image the model sees:

1. the uint8 RGB image (see :func:`napari_vip.core.image.to_model_rgb`) is resized to 256x256;
2. the marker is drawn there with a line width in pixels of that 256x256 image:

   - ``bbox``: rectangle outline exactly on the box (a thicker line grows inward);
   - ``circle``: outline of the ellipse inscribed in the box (grows inward);
   - ``arrow``: tip at the box centre, tail ``0.25 * min(W, H)`` back toward the image centre
     (``u = (box centre - image centre) / |...|``, ``tail = tip - u * L``; 5 px below the tip when the
     two centres coincide), a line shaft and a filled triangular head 10 px long and 10 px wide;
   - ``crop``: instead of drawing, the square centred on the box with half-size
     ``max(0.5 w, 0.5 h, 0.2 W, 0.2 H)`` (w, h: box; W, H: image), clipped to the image, cut from
     the full-resolution image;
   - ``none``: the resized image, unchanged.

Coordinates are (x, y) with pixel centres at integers (see :mod:`napari_vip.core.coords`).
The ``paper`` recipe draws the same styles exactly as the paper's released code does
(:mod:`napari_vip.core.paper_render`); :mod:`napari_vip.core.recipes` chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .coords import clip_box_xyxy, scale_xy
from .errors import VipInputError
from .image import resize_rgb

#: Side of the square image markers are drawn on.
RENDER_SIZE = 256
#: Arrow head length and width, in pixels of the 256x256 image.
ARROW_HEAD_LENGTH = 10.0
ARROW_HEAD_WIDTH = 10.0
#: Arrow length as a fraction of ``min(W, H)``.
ARROW_LENGTH_FRACTION = 0.25
#: Tail offset below the tip when the box centre is the image centre.
ARROW_FALLBACK_OFFSET = 5.0
#: Crop half-size: max of these fractions of the box (w, h) and of the image (W, H).
CROP_BOX_FRACTION = 0.5
CROP_IMAGE_FRACTION = 0.2

STYLES = ("none", "bbox", "circle", "arrow", "crop")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}


@dataclass(frozen=True)
class Marker:
    """A visual prompt drawn by the user.

    Attributes
    ----------
    box_xyxy : (float, float, float, float)
        ``(x0, y0, x1, y1)`` in pixels of the full-resolution image.
    style : str
        One of :data:`STYLES`.
    color : str
        One of :data:`COLORS`.
    line_width : int
        Line width in pixels of the 256x256 render.
    arrow_xy : ((float, float), (float, float)), optional
        ``((tail_x, tail_y), (head_x, head_y))`` of an arrow the user drew, in full-resolution pixels.
        When given, ``style='arrow'`` draws this arrow instead of deriving one from the box.
    """

    box_xyxy: tuple[float, float, float, float]
    style: str = "circle"
    color: str = "red"
    line_width: int = 1
    arrow_xy: tuple[tuple[float, float], tuple[float, float]] | None = None

    def __post_init__(self):
        if self.style not in STYLES:
            raise VipInputError(f"Unknown marker style {self.style!r}; choose one of {', '.join(STYLES)}.")
        if self.color not in COLORS:
            raise VipInputError(f"Unknown marker colour {self.color!r}; choose one of {', '.join(COLORS)}.")
        if int(self.line_width) < 1:
            raise VipInputError(f"Marker line width must be at least 1 pixel, got {self.line_width}.")

    def to_dict(self) -> dict:
        """JSON-ready description."""
        d = {"style": self.style, "color": self.color, "line_width": int(self.line_width),
             "box_xyxy": [float(v) for v in self.box_xyxy]}
        if self.arrow_xy is not None:
            d["arrow_xy"] = [[float(v) for v in p] for p in self.arrow_xy]
        return d

    @classmethod
    def from_arrow(cls, tail_xy, head_xy, color: str = "red", line_width: int = 1) -> Marker:
        """A marker from a drawn arrow.  Its box is the square centred on the head whose side is the
        arrow's length, so box-based styles (bbox, circle, crop) and the focus metric have a region."""
        (tx, ty), (hx, hy) = (float(v) for v in tail_xy), (float(v) for v in head_xy)
        half = max(np.hypot(hx - tx, hy - ty) / 2.0, 1.0)
        return cls((hx - half, hy - half, hx + half, hy + half), "arrow", color, line_width, ((tx, ty), (hx, hy)))


def clip_markers(markers, hw: tuple[int, int]) -> tuple[list[Marker], list[str]]:
    """Each marker with its box clipped to an image of shape ``hw``, and a note per clipped marker.

    Raises :class:`VipInputError` for a marker with zero area or wholly outside the image.
    """
    from dataclasses import replace

    clipped, notes = [], []
    for k, marker in enumerate(markers):
        box, was_clipped = clip_box_xyxy(marker.box_xyxy, hw)
        if was_clipped:
            kept = tuple(round(v, 2) for v in box)
            notes.append(f"marker {k + 1}: box {tuple(float(v) for v in marker.box_xyxy)} reaches outside the "
                         f"image; clipped to {kept}")
        clipped.append(replace(marker, box_xyxy=box))
    return clipped, notes


def arrow_from_box(box_xyxy, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Tail and tip ``(x, y)`` of the paper's arrow for a box on an image of shape ``hw``.

    The tip is the box centre; the tail lies ``0.25 * min(hw)`` back toward the image centre, so the
    arrow points from the middle of the image out at the finding.
    """
    x0, y0, x1, y1 = box_xyxy
    tip = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    centre = np.array([(hw[1] - 1) / 2.0, (hw[0] - 1) / 2.0])
    ray = tip - centre
    norm = float(np.hypot(*ray))
    if norm < 1e-9:
        return tip + np.array([0.0, ARROW_FALLBACK_OFFSET]), tip
    length = ARROW_LENGTH_FRACTION * min(hw)
    return tip - ray / norm * length, tip


def crop_box(box_xyxy, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer pixel bounds ``(x0, y0, x1, y1)`` (inclusive) of the paper's crop square, clipped."""
    x0, y0, x1, y1 = box_xyxy
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    h, w = hw
    half = max(CROP_BOX_FRACTION * (x1 - x0), CROP_BOX_FRACTION * (y1 - y0),
               CROP_IMAGE_FRACTION * w, CROP_IMAGE_FRACTION * h)
    cx0 = int(max(0, np.floor(cx - half + 0.5)))
    cy0 = int(max(0, np.floor(cy - half + 0.5)))
    cx1 = int(min(w - 1, np.floor(cx + half - 0.5)))
    cy1 = int(min(h - 1, np.floor(cy + half - 0.5)))
    return cx0, cy0, cx1, cy1


def box_outline_mask(box_xyxy, hw: tuple[int, int], width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: rectangle outline on the box's pixel-rounded edges, ``width`` pixels inward."""
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    mask = np.zeros(hw, dtype=bool)
    r0, r1 = max(y0, 0), min(y1, hw[0] - 1)
    c0, c1 = max(x0, 0), min(x1, hw[1] - 1)
    if r1 < r0 or c1 < c0:
        return mask
    inner = np.zeros(hw, dtype=bool)
    mask[r0:r1 + 1, c0:c1 + 1] = True
    ir0, ir1, ic0, ic1 = y0 + width, y1 - width, x0 + width, x1 - width
    if ir1 >= ir0 and ic1 >= ic0:
        inner[max(ir0, 0):max(ir1 + 1, 0), max(ic0, 0):max(ic1 + 1, 0)] = True
    return mask & ~inner


def ellipse_outline_mask(box_xyxy, hw: tuple[int, int], width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: outline of the ellipse inscribed in the box, ``width`` pixels inward.

    A pixel centre is on the outline when it is inside the ellipse through the box's rounded edges
    and outside that ellipse shrunk by ``width`` on each semi-axis.
    """
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    a, b = (x1 - x0) / 2.0 + 0.5, (y1 - y0) / 2.0 + 0.5
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    outer = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    ai, bi = a - width, b - width
    if ai <= 0 or bi <= 0:
        return outer
    inner = ((xx - cx) / ai) ** 2 + ((yy - cy) / bi) ** 2 <= 1.0
    return outer & ~inner


def arrow_mask(tail_xy, tip_xy, hw: tuple[int, int], width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: shaft from tail to the head's base, filled triangular head ending at the tip."""
    from skimage.draw import line, polygon

    mask = np.zeros(hw, dtype=bool)
    tail = np.asarray(tail_xy, dtype=np.float64)
    tip = np.asarray(tip_xy, dtype=np.float64)
    vec = tip - tail
    length = float(np.hypot(*vec))
    if length < 1e-9:
        return mask
    u = vec / length
    n = np.array([-u[1], u[0]])
    base = tip - u * ARROW_HEAD_LENGTH
    half_w = ARROW_HEAD_WIDTH / 2.0
    head = np.stack([tip, base + n * half_w, base - n * half_w])
    rr, cc = polygon(head[:, 1], head[:, 0], shape=hw)
    mask[rr, cc] = True
    shaft_end = base if length > ARROW_HEAD_LENGTH else tip
    if width <= 1:
        rr, cc = line(int(round(tail[1])), int(round(tail[0])), int(round(shaft_end[1])), int(round(shaft_end[0])))
        keep = (rr >= 0) & (rr < hw[0]) & (cc >= 0) & (cc < hw[1])
        mask[rr[keep], cc[keep]] = True
    else:
        hw_ = width / 2.0
        quad = np.stack([tail + n * hw_, shaft_end + n * hw_, shaft_end - n * hw_, tail - n * hw_])
        rr, cc = polygon(quad[:, 1], quad[:, 0], shape=hw)
        mask[rr, cc] = True
    # the tip pixel itself, so the arrow always touches the target
    ti, tj = int(round(tip[1])), int(round(tip[0]))
    if 0 <= ti < hw[0] and 0 <= tj < hw[1]:
        mask[ti, tj] = True
    return mask


def render_marker(rgb: np.ndarray, marker: Marker | None, size: int = RENDER_SIZE) -> np.ndarray:
    """The image the model sees for one marker condition.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` uint8 full-resolution image (rows first).
    marker : Marker or None
        ``None`` or ``style='none'``: the resized image without a marker.
    size : int
        Side of the square render.

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` uint8, or for ``crop`` the ``(h, w, 3)`` uint8 crop at full resolution.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"render_marker needs (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    hw = rgb.shape[:2]
    if marker is None or marker.style == "none":
        return resize_rgb(rgb, (size, size))
    box, _ = clip_box_xyxy(marker.box_xyxy, hw)
    if marker.style == "crop":
        x0, y0, x1, y1 = crop_box(box, hw)
        return rgb[y0:y1 + 1, x0:x1 + 1].copy()
    canvas = resize_rgb(rgb, (size, size))
    shw = (size, size)
    sbox = scale_xy(np.array([[box[0], box[1]], [box[2], box[3]]]), hw, shw).ravel()
    width = int(marker.line_width)
    if marker.style == "bbox":
        mask = box_outline_mask(sbox, shw, width)
    elif marker.style == "circle":
        mask = ellipse_outline_mask(sbox, shw, width)
    else:  # arrow
        if marker.arrow_xy is not None:
            tail, tip = scale_xy(np.asarray(marker.arrow_xy, dtype=np.float64), hw, shw)
        else:
            tail, tip = arrow_from_box(sbox, shw)
        mask = arrow_mask(tail, tip, shw, width)
    canvas[mask] = COLORS[marker.color]
    return canvas
