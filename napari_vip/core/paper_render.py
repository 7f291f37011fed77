"""The ``paper`` recipe: the image the model sees, made as the released code of Denner et al. (MIDL 2025) makes it.

Step by step, for a stored plane ``(H, W)`` or ``(H, W, C)`` of any real dtype:

1. :func:`paper_rgb`: ``uint8((v - min) / (max - min) * 255)`` over every stored value (also for uint8
   images; the cast truncates), then RGB (gray replicated, alpha dropped);
2. marker styles ``none``, ``bbox``, ``circle``, ``arrow``: Pillow's bicubic resize to 256x256, the box
   scaled to that image with ``int()`` truncation (``x1 = int(x0 / (W / 256))``...), then drawn with
   Pillow's ``ImageDraw`` in the colour of that name (Pillow's colour table: ``green`` is (0, 128, 0)):

   - ``bbox``: ``rectangle`` outline on the scaled box, ``width`` = line width;
   - ``circle``: ``ellipse`` outline inscribed in the scaled box;
   - ``arrow``: tip at the box centre, tail ``0.25 * min(w, h)`` back toward the image centre
     ``(w / 2, h / 2)`` of the 256x256 image (``tail = tip - u * L``; ``tail = tip + (0, 5)`` when the
     centres coincide), a ``line`` shaft and a filled triangular head 10 px long and 10 px wide at its base;

3. ``crop``: no resize: the box truncated to integers on the full-resolution image, the square of
   half-size ``max(0.5 w, 0.5 h, 0.2 W, 0.2 H)`` around its centre, corners ``int()``-truncated and
   clipped (``x1 = max(0, int(cx - s))``, ``x2 = min(W, int(cx + s))``, right/bottom exclusive).

JSRT (``.IMG`` files) starts from its own released loader instead of step 1, :func:`jsrt_rgb`: window centre
2048, width 4096 to uint8 (truncated), inverted, then min-max to 0..255 (truncated), RGB; steps 2 and 3 follow.

The released code's VinDr-CXR and NIH14 loaders scale the crop's box by ``H / W`` in x and ``W / H`` in y
(``t_h, t_w = image.size`` swaps the axes) when the image is not square; here the crop box is the box itself,
so a crop lands on the marked finding for every image shape.  :func:`released_crop_box` gives the released
box, for reproducing its numbers (``--released-quirks``).
Coordinates are ``(x, y)`` = (column, row).
"""

from __future__ import annotations

import math

import numpy as np

#: Side of the square image markers are drawn on.
PAPER_SIZE = 256
#: Arrow head length and base width, in pixels of the 256x256 image.
PAPER_ARROW_HEAD = 10
#: Arrow length as a fraction of ``min(w, h)`` of the 256x256 image.
PAPER_ARROW_FRACTION = 0.25
#: Tail offset below the tip when the box centre is the image centre.
PAPER_ARROW_FALLBACK = 5
#: ``(rows, cols)`` of a JSRT image.
JSRT_SHAPE = (2048, 2048)
#: Window ``(centre, width)`` of the released JSRT loader.
JSRT_WINDOW = (2048, 4096)


def paper_rgb(plane: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8: min-max of every stored value to 0..255 (truncated), as RGB.

    Parameters
    ----------
    plane : np.ndarray
        ``(H, W)`` gray or ``(H, W, 3|4)`` colour, any real dtype, finite values.  A constant plane gives zeros.
    """
    data = np.asarray(plane)
    low, high = data.min(), data.max()
    span = float(high) - float(low)
    if span > 0:
        scaled = (data - low) / span * 255  # integer difference first, as numpy does for the stored dtype
        out = scaled.astype(np.uint8)
    else:
        out = np.zeros(data.shape, dtype=np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return np.ascontiguousarray(out[..., :3])


def jsrt_rgb(raw: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8: the released JSRT loader's image at full resolution.

    ``v = uint8(clip(clip(raw, c - w // 2, c + w // 2) - (c - w // 2)) / w * 255, 0, 255))`` for the window
    ``(c, w) = (2048, 4096)``, then ``u = 255 - v``, then ``uint8((u - min u) / (max u - min u) * 255)`` (casts
    truncate), gray replicated to RGB.  A constant image gives zeros.

    Parameters
    ----------
    raw : np.ndarray
        ``(H, W)`` integer pixels as stored (:func:`napari_vip.io.jsrt.read_jsrt_pixels`).
    """
    data = np.asarray(raw)
    if data.ndim != 2:
        raise ValueError(f"jsrt_rgb needs a (H, W) plane, got shape {data.shape}")
    centre, width = JSRT_WINDOW
    low, high = centre - width // 2, centre + width // 2
    clipped = np.clip(data, low, high)
    windowed = np.clip((clipped - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
    inverted = 255 - windowed
    lo, hi = inverted.min(), inverted.max()
    if hi > lo:
        out = ((inverted - lo) / (hi - lo) * 255).astype(np.uint8)
    else:
        out = np.zeros(inverted.shape, dtype=np.uint8)
    return np.ascontiguousarray(np.repeat(out[..., None], 3, axis=-1))


def released_crop_box(box_xyxy, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box the released VinDr-CXR / NIH14 loaders crop around, for an ``hw`` image (their axes swapped).

    ``t_h, t_w = image.size`` makes the ratios ``W / H`` (x) and ``H / W`` (y):
    ``(int(x0 / (W / H)), int(y0 / (H / W)), int(x1 / (W / H)), int(y1 / (H / W)))``; equal to the box
    (truncated) for square images.
    """
    h, w = hw
    t_h, t_w = w, h  # the released code's swap
    w_ratio, h_ratio = w / t_w, h / t_h
    x0, y0, x1, y1 = box_xyxy
    return int(x0 / w_ratio), int(y0 / h_ratio), int(x1 / w_ratio), int(y1 / h_ratio)


def paper_box(box_xyxy, hw: tuple[int, int], size: int = PAPER_SIZE) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` of an ``hw`` image scaled to ``size x size`` with ``int()`` truncation."""
    h, w = hw
    x0, y0, x1, y1 = box_xyxy
    return int(x0 / (w / size)), int(y0 / (h / size)), int(x1 / (w / size)), int(y1 / (h / size))


def paper_arrow(box_xyxy, size: int = PAPER_SIZE) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(tail_xy, tip_xy)`` of the arrow for a box already on the ``size x size`` image."""
    x1, y1, x2, y2 = box_xyxy
    tip_x, tip_y = (x1 + x2) / 2, (y1 + y2) / 2
    dx, dy = tip_x - size / 2, tip_y - size / 2
    dist = math.sqrt(dx * dx + dy * dy)
    if dist == 0:
        return (tip_x, tip_y + PAPER_ARROW_FALLBACK), (tip_x, tip_y)
    length = PAPER_ARROW_FRACTION * size
    return (tip_x - dx / dist * length, tip_y - dy / dist * length), (tip_x, tip_y)


def paper_crop_box(box_xyxy, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel bounds ``(x0, y0, x1, y1)`` of the paper's crop, right and bottom exclusive, for an ``hw`` image."""
    h, w = hw
    x1, y1, x2, y2 = (int(v) for v in box_xyxy)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(0.5 * (x2 - x1), 0.5 * (y2 - y1), 0.2 * w, 0.2 * h)
    return max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half))


def render_paper(rgb: np.ndarray, marker, size: int = PAPER_SIZE) -> np.ndarray:
    """The image the model sees for one marker condition under the ``paper`` recipe.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` uint8 full-resolution image from :func:`paper_rgb`.
    marker : napari_vip.core.markers.Marker or None
        Its ``box_xyxy`` is in full-resolution pixels.  A drawn arrow (``arrow_xy``) is scaled like the box.

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` uint8, or for ``crop`` the ``(h, w, 3)`` uint8 crop at full resolution.
    """
    from PIL import Image, ImageColor, ImageDraw

    hw = rgb.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if marker is not None and marker.style == "crop":
        return np.asarray(image.crop(paper_crop_box(marker.box_xyxy, hw))).copy()
    image = image.resize((size, size), Image.BICUBIC)
    if marker is None or marker.style == "none":
        return np.asarray(image).copy()
    color = ImageColor.getrgb(marker.color)
    width = int(marker.line_width)
    box = paper_box(marker.box_xyxy, hw, size)
    draw = ImageDraw.Draw(image)
    if marker.style == "bbox":
        draw.rectangle(box, outline=color, width=width)
    elif marker.style == "circle":
        draw.ellipse(box, outline=color, width=width)
    else:
        if marker.arrow_xy is not None:
            (tx, ty), (hx, hy) = marker.arrow_xy
            tail = (tx * size / hw[1], ty * size / hw[0])
            tip = (hx * size / hw[1], hy * size / hw[0])
        else:
            tail, tip = paper_arrow(box, size)
        _draw_arrow(draw, tail, tip, color, width)
    return np.asarray(image).copy()


def _draw_arrow(draw, tail, tip, color, width: int) -> None:
    """Shaft from ``tail`` to ``tip`` and a filled head ending at ``tip`` (``(x, y)`` each)."""
    draw.line([tail, tip], fill=color, width=width)
    dx, dy = tip[0] - tail[0], tip[1] - tail[1]
    length = math.sqrt(dx * dx + dy * dy)
    if length <= 0:
        return
    ux, uy = dx / length, dy / length
    px, py = -uy, ux
    back_x, back_y = tip[0] - ux * PAPER_ARROW_HEAD, tip[1] - uy * PAPER_ARROW_HEAD
    half = PAPER_ARROW_HEAD / 2
    draw.polygon([tip, (back_x + px * half, back_y + py * half), (back_x - px * half, back_y - py * half)], fill=color)
