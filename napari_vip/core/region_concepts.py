"""Concept prompts from a region of interest (He et al., Engineering 2026; Poudel et al., MIDL 2024).

A region (a mask, e.g. SAM's, or else a marker's box) is described by five attributes, measured
without any model, and written into the template::

    {number} {shape} {size} {color} {keyword}, located in the {location} of the image.

e.g. ``"1 oval small bright nodule, located in the top left of the image."``.  The progressive
variants p1 ... p6 add one attribute at a time (:data:`VARIANTS`), so their effect can be compared.

How each attribute is measured (the thresholds are module constants):

- **number**: connected components of the mask (8-connectivity), not counting specks smaller than
  :data:`MIN_COMPONENT_FRACTION` of the largest component.  Written as digits (``"1"``), as in the
  papers, or as words (``"one"``) with ``number_words=True``.  With more than one object the last
  word of the keyword is made plural (``nodule`` -> ``nodules``).
- **shape**, from the largest component: ``irregular`` when its solidity (pixel count / area of the
  convex hull of its pixels' corners) is below :data:`IRREGULAR_MAX_SOLIDITY` (0.8); otherwise by the eccentricity of the ellipse with the
  same second moments: ``round`` up to :data:`ROUND_MAX_ECCENTRICITY` (0.6, minor/major axis >= 0.8),
  ``oval`` up to :data:`OVAL_MAX_ECCENTRICITY` (0.9, axis ratio >= 0.44), else ``elongated``.
- **size**, from the mask's share of the image area: ``tiny`` below 0.5 %, ``small`` below 3 %,
  ``medium`` below 15 %, else ``large`` (:data:`SIZE_THRESHOLDS`).
- **color**: for colour images, the name in :data:`COLOR_NAMES` nearest (CIELAB distance) to the
  region's mean colour; for grayscale images (or RGB with equal channels), brightness against the
  surrounding ring (pixels within ``max(3, 0.5 * equivalent radius)`` pixels of the region, outside it):
  ``bright`` when the region's mean exceeds the ring's by more than :data:`BRIGHTNESS_THRESHOLD` (0.1)
  of the image's intensity range, ``dark`` when below by as much, else ``similar``.
- **location**, from the centroid of the whole mask in normalised image coordinates
  ``u = (x + 0.5) / W, v = (y + 0.5) / H``: ``center`` when within :data:`CENTER_RADIUS` (0.1) of
  ``(0.5, 0.5)``; otherwise ``top`` (``v < 0.5``) or ``bottom``, and ``left`` (``u < 1/3``),
  ``center`` or ``right`` (``u > 2/3``): e.g. ``top left``, ``bottom center``.

A box ``(x0, y0, x1, y1)`` (pixel centres, see :mod:`napari_vip.core.coords`) is described through the
ellipse inscribed in it, which is closer to the finding a box is drawn around than the rectangle.

Images are ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB) arrays, rows first; masks are ``(H, W)`` arrays
whose non-zero pixels are the region.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import VipInputError
from .prompts import check_template_fields

TEMPLATE = "{number} {shape} {size} {color} {keyword}, located in the {location} of the image."
#: Progressive variants: keyword; + shape; + colour; + size; + number; + location (p6 is :data:`TEMPLATE`).
VARIANTS = {
    "p1": "{keyword}",
    "p2": "{shape} {keyword}",
    "p3": "{shape} {color} {keyword}",
    "p4": "{shape} {size} {color} {keyword}",
    "p5": "{number} {shape} {size} {color} {keyword}",
    "p6": TEMPLATE,
}
FIELDS = ("number", "shape", "size", "color", "keyword", "location")

#: Components smaller than this share of the largest one are specks, not objects.
MIN_COMPONENT_FRACTION = 0.05
IRREGULAR_MAX_SOLIDITY = 0.8
ROUND_MAX_ECCENTRICITY = 0.6
OVAL_MAX_ECCENTRICITY = 0.9
#: ``(upper bound of the area share, name)``, checked in order; the rest is ``large``.
SIZE_THRESHOLDS = ((0.005, "tiny"), (0.03, "small"), (0.15, "medium"))
BRIGHTNESS_THRESHOLD = 0.1
#: Mean channel spread (0-255 scale) below which an RGB image counts as grayscale.
GRAY_CHANNEL_SPREAD = 2.0
CENTER_RADIUS = 0.1
#: Ring width around the region: ``max(RING_MIN_PX, RING_RADIUS_FRACTION * equivalent radius)``.
RING_MIN_PX = 3
RING_RADIUS_FRACTION = 0.5

#: Named colours (sRGB, 0-255) for colour images.
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (200, 35, 35),
    "dark red": (110, 20, 20),
    "pink": (235, 150, 170),
    "orange": (235, 135, 40),
    "yellow": (235, 215, 60),
    "brown": (125, 75, 40),
    "green": (50, 160, 60),
    "blue": (40, 80, 200),
    "purple": (125, 50, 150),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass
class RegionConcepts:
    """The attributes of a region and the measurements behind them.

    Attributes
    ----------
    number : int
        Connected objects.
    shape, size, color, location, keyword : str
    source : str
        ``"mask"`` or ``"box"``.
    area_fraction : float
        Region pixels / image pixels.
    eccentricity, solidity : float
        Of the largest component.
    centroid_xy : (float, float)
        Of the whole region, in pixels (x, y).
    mean_color : (float, float, float) or None
        Mean RGB (0-255) of a colour image's region.
    contrast : float or None
        (region mean - ring mean) / intensity range, for grayscale images.
    number_words : bool
        Write the number as a word.
    notes : list of str
    """

    number: int
    shape: str
    size: str
    color: str
    location: str
    keyword: str
    source: str
    area_fraction: float
    eccentricity: float
    solidity: float
    centroid_xy: tuple[float, float]
    mean_color: tuple[float, float, float] | None = None
    contrast: float | None = None
    number_words: bool = False
    notes: list[str] = field(default_factory=list)

    def values(self) -> dict[str, str]:
        """The template fields as text: number (digits or words), shape, size, color, keyword, location."""
        n = self.number
        number = (NUMBER_WORDS[n] if n < len(NUMBER_WORDS) else str(n)) if self.number_words else str(n)
        keyword = plural(self.keyword) if n > 1 else self.keyword
        return {"number": number, "shape": self.shape, "size": self.size, "color": self.color,
                "keyword": keyword, "location": self.location}

    def sentence(self, template: str = TEMPLATE) -> str:
        """The template filled with this region's attributes (see :func:`fill_template`)."""
        return fill_template(template, self.values())

    def variants(self) -> dict[str, str]:
        """``{"p1": ..., ..., "p6": ...}``: the progressive prompts."""
        return {k: self.sentence(t) for k, t in VARIANTS.items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centroid_xy"] = [float(v) for v in self.centroid_xy]
        if self.mean_color is not None:
            d["mean_color"] = [float(v) for v in self.mean_color]
        d["sentence"] = self.sentence()
        d["variants"] = self.variants()
        return d


def plural(keyword: str) -> str:
    """English plural of the last word: nodule -> nodules, mass -> masses, opacity -> opacities."""
    words = keyword.split(" ")
    w = words[-1]
    if not w:
        return keyword
    low = w.lower()
    if low.endswith(("s", "x", "z", "ch", "sh")):
        w = w + "es"
    elif low.endswith("y") and len(low) > 1 and low[-2] not in "aeiou":
        w = w[:-1] + "ies"
    else:
        w = w + "s"
    words[-1] = w
    return " ".join(words)


def check_template(template: str) -> None:
    """Refuse a region template with fields other than :data:`FIELDS`."""
    check_template_fields(template, "Region", FIELDS)


def fill_template(template: str, values: dict[str, str]) -> str:
    """Fill ``template``; runs of spaces left by empty fields are collapsed."""
    check_template(template)
    return " ".join(template.format(**values).split())


def _check_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise VipInputError(f"Region concepts need an (H, W) gray or (H, W, 3) colour image, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise VipInputError(f"Image has dtype {arr.dtype}; region concepts need numbers.")
    return arr


def check_mask(mask, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool from a mask (non-zero = region); VipInputError for a wrong shape or an empty mask."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (3, 4) and m.shape[:2] == tuple(hw):
        m = m[..., :3].any(axis=-1)  # a mask saved as an RGB(A) picture
    if m.shape != tuple(hw):
        raise VipInputError(f"The mask has shape {m.shape} but the image is {tuple(hw)} (rows, cols); "
                            "use a mask made on this image (same height and width).")
    m = m != 0
    if not m.any():
        raise VipInputError("The mask is empty: there is no region to describe. Segment the finding first, "
                            "or describe the marker's box instead.")
    return m


def box_region(box_xyxy, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the ellipse inscribed in ``box_xyxy`` (x, y pixel centres), at least the centre pixel."""
    from .coords import clip_box_xyxy

    (x0, y0, x1, y1), _ = clip_box_xyxy(box_xyxy, hw)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    a, b = (x1 - x0) / 2.0 + 0.5, (y1 - y0) / 2.0 + 0.5  # to the box's pixel edges
    r0, r1 = max(int(np.floor(cy - b)), 0), min(int(np.ceil(cy + b)) + 1, hw[0])
    c0, c1 = max(int(np.floor(cx - a)), 0), min(int(np.ceil(cx + a)) + 1, hw[1])
    yy, xx = np.mgrid[r0:r1, c0:c1]
    m = np.zeros(hw, dtype=bool)
    m[r0:r1, c0:c1] = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
    m[int(round(cy)), int(round(cx))] = True
    return m


def _size_name(fraction: float) -> str:
    for bound, name in SIZE_THRESHOLDS:
        if fraction < bound:
            return name
    return "large"


def _shape_name(eccentricity: float, solidity: float) -> str:
    if solidity < IRREGULAR_MAX_SOLIDITY:
        return "irregular"
    if eccentricity <= ROUND_MAX_ECCENTRICITY:
        return "round"
    if eccentricity <= OVAL_MAX_ECCENTRICITY:
        return "oval"
    return "elongated"


def location_name(centroid_xy, hw: tuple[int, int]) -> str:
    """``center`` or ``top|bottom left|center|right`` for a point (x, y) on an image of shape ``hw``."""
    u = (centroid_xy[0] + 0.5) / hw[1]
    v = (centroid_xy[1] + 0.5) / hw[0]
    if np.hypot(u - 0.5, v - 0.5) <= CENTER_RADIUS:
        return "center"
    vert = "top" if v < 0.5 else "bottom"
    horiz = "left" if u < 1 / 3 else ("right" if u > 2 / 3 else "center")
    return f"{vert} {horiz}"


def color_name(rgb_mean) -> str:
    """The :data:`COLOR_NAMES` entry nearest in CIELAB to an sRGB colour (0-255)."""
    from skimage.color import rgb2lab

    names = list(COLOR_NAMES)
    ref = rgb2lab(np.asarray([COLOR_NAMES[n] for n in names], dtype=np.float64)[None] / 255.0)[0]
    lab = rgb2lab(np.clip(np.asarray(rgb_mean, dtype=np.float64), 0, 255)[None, None] / 255.0)[0, 0]
    return names[int(np.argmin(np.linalg.norm(ref - lab, axis=1)))]


def _is_gray(img: np.ndarray) -> bool:
    """Gray when 2D, or when the channels of (a regular sample of at most ~262k) pixels barely differ."""
    if img.ndim == 2:
        return True
    step = max(1, int(np.ceil(np.sqrt(img.shape[0] * img.shape[1] / 262144))))
    sample = img[::step, ::step].astype(np.float64)
    spread = np.abs(sample[..., 0] - sample[..., 1]) + np.abs(sample[..., 1] - sample[..., 2])
    return float(spread.mean()) / 2.0 < GRAY_CHANNEL_SPREAD


def solidity(component: np.ndarray) -> float:
    """Pixel count / area of the convex hull of the pixels' corners, for a bool ``(h, w)`` component crop."""
    from scipy.spatial import ConvexHull

    rr, cc = np.nonzero(component)
    starts = np.r_[0, np.flatnonzero(np.diff(rr)) + 1]  # rows are sorted: first pixel of each row
    rows = rr[starts].astype(np.float64)
    cmin = np.minimum.reduceat(cc, starts).astype(np.float64)
    cmax = np.maximum.reduceat(cc, starts).astype(np.float64)
    pts = np.concatenate([np.stack([rows + dr, c + dc], axis=1)
                          for dr in (-0.5, 0.5) for c, dc in ((cmin, -0.5), (cmax, 0.5))])
    return float(len(rr) / ConvexHull(pts).volume)


def _ring_contrast(gray: np.ndarray, m: np.ndarray, bbox) -> float | None:
    """(mean in ``m`` - mean of the surrounding ring) / intensity range of ``gray``; ``None`` without a ring.

    ``bbox`` = ``(r0, c0, r1, c1)`` (end exclusive) of the region.  Computed on the crop that holds the
    region and its ring, so it costs little on large images.
    """
    from scipy import ndimage

    radius = np.sqrt(m.sum() / np.pi)
    width = max(RING_MIN_PX, RING_RADIUS_FRACTION * radius)
    pad = int(np.ceil(width)) + 1
    r0, r1 = max(bbox[0] - pad, 0), min(bbox[2] + pad, m.shape[0])
    c0, c1 = max(bbox[1] - pad, 0), min(bbox[3] + pad, m.shape[1])
    mc = m[r0:r1, c0:c1]
    gc = gray[r0:r1, c0:c1].astype(np.float64)
    dist = ndimage.distance_transform_edt(~mc)
    ring = (dist > 0) & (dist <= width)
    rng = float(gray.max()) - float(gray.min())
    if not ring.any() or rng <= 0:
        return None
    return float((gc[mc].mean() - gc[ring].mean()) / rng)


def describe_mask(image, mask, keyword: str = "lesion", number_words: bool = False,
                  source: str = "mask") -> RegionConcepts:
    """Describe a masked region of ``image``.

    Parameters
    ----------
    image : array-like
        ``(H, W)`` gray or ``(H, W, 3|4)`` RGB, any numeric dtype (uint8 0-255 for colour names).
    mask : array-like
        ``(H, W)``; non-zero pixels are the region (a label image counts all its labels).
    keyword : str
        What the region is ("nodule", "polyp").

    Raises
    ------
    VipInputError
        Empty mask, mask of another shape than the image, empty keyword.
    """
    from skimage.measure import label, regionprops

    img = _check_image(image)
    hw = img.shape[:2]
    m = check_mask(mask, hw)
    keyword = " ".join(str(keyword).split())
    if not keyword:
        raise VipInputError("Give a keyword naming the region (e.g. nodule, polyp, lesion).")
    notes: list[str] = []
    lab = label(m, connectivity=2)
    props = sorted(regionprops(lab), key=lambda p: p.area, reverse=True)
    largest = props[0]
    keep = [p for p in props if p.area >= MIN_COMPONENT_FRACTION * largest.area]
    if len(keep) < len(props):
        notes.append(f"{len(props) - len(keep)} speck(s) under {MIN_COMPONENT_FRACTION:.0%} of the largest "
                     "object were not counted")
    if largest.area < 3:
        ecc, sol = 0.0, 1.0
        notes.append("the region is too small to measure its shape; called round")
    else:
        ecc, sol = float(largest.eccentricity), solidity(largest.image)
    area = float(sum(p.area for p in props))
    area_fraction = area / float(m.size)
    cy = sum(p.centroid[0] * p.area for p in props) / area
    cx = sum(p.centroid[1] * p.area for p in props) / area
    centroid_xy = (float(cx), float(cy))
    bbox = (min(p.bbox[0] for p in props), min(p.bbox[1] for p in props),
            max(p.bbox[2] for p in props), max(p.bbox[3] for p in props))

    mean_color = contrast = None
    if _is_gray(img):
        contrast = _ring_contrast(img if img.ndim == 2 else img[..., 0], m, bbox)
        if contrast is None:
            color = "similar"
            contrast = 0.0
            notes.append("no surrounding pixels (or a flat image) to compare brightness with")
        else:
            color = "bright" if contrast > BRIGHTNESS_THRESHOLD else ("dark" if contrast < -BRIGHTNESS_THRESHOLD
                                                                      else "similar")
    else:
        mean_color = tuple(float(v) for v in img[m].astype(np.float64).mean(axis=0))
        color = color_name(mean_color)
    return RegionConcepts(number=len(keep), shape=_shape_name(ecc, sol), size=_size_name(area_fraction),
                          color=color, location=location_name(centroid_xy, hw), keyword=keyword, source=source,
                          area_fraction=area_fraction, eccentricity=ecc, solidity=sol, centroid_xy=centroid_xy,
                          mean_color=mean_color, contrast=contrast, number_words=number_words, notes=notes)


def describe_box(image, box_xyxy, keyword: str = "lesion", number_words: bool = False) -> RegionConcepts:
    """Describe the ellipse inscribed in ``box_xyxy`` = ``(x0, y0, x1, y1)`` (pixels) on ``image``."""
    img = _check_image(image)
    return describe_mask(img, box_region(box_xyxy, img.shape[:2]), keyword, number_words, source="box")


def describe_region(image, mask=None, box_xyxy=None, keyword: str = "lesion",
                    number_words: bool = False) -> RegionConcepts:
    """The front door: describe ``mask`` when given (and not empty), else ``box_xyxy``.

    An empty ``mask`` with a box falls back to the box (with a note); with no box it is an error.
    """
    if mask is not None:
        m = np.asarray(mask)
        if box_xyxy is not None and m.shape[:2] == np.asarray(image).shape[:2] and not np.any(m):
            rc = describe_box(image, box_xyxy, keyword, number_words)
            rc.notes.insert(0, "the mask is empty; described the marker's box instead")
            return rc
        return describe_mask(image, m, keyword, number_words)
    if box_xyxy is not None:
        return describe_box(image, box_xyxy, keyword, number_words)
    raise VipInputError("Nothing to describe: give a mask or a box around the region.")
