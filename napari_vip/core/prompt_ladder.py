"""The medvlsm prompt ladder: ten prompts p0 ... p9 per image, from nothing to a full description.

Poudel et al. (MIDL 2024, code naamiinepal/medvlsm) fine-tune and test language-guided segmentation models
with ten prompt types per image, stored in ``data/<dataset>/anns/{train,val,test}.json``.  The generator
that wrote them is not in the released repository; the wording here is read off the released files
(Kvasir, BKAI, ClinicDB, ColonDB, CVC-300, ETIS, ISIC, DFU), which all follow one form::

    p0  ""
    p1  "{class}"                                                     "polyp"
    p2  "{shape} {class}"                                             "round polyp"
    p3  "{color} {shape} {class}"                                     "pink round polyp"
    p4  "{size} {color} {shape} {class}"                              "small pink round polyp"
    p5  "{number} {size} {color} {shape} {class}"                     "one small pink round polyp"
    p6  "{p5}, located in {location} of the image"                    "..., located in right of the image"
    p7  ["{class} which is {definition}", ...]                        one per definition
    p8  ["{p5} which is {definition}", ...]
    p9  ["{p5} which is {definition} located in {location} of the image", ...]   (no comma before "located")

Details as released (and unlike :mod:`napari_vip.core.region_concepts`' CoTexNet template): the number is a
word (``one``, ``two``, ``thirteen``); the class stays singular after ``two``; the location has no article
(``located in right of the image``, ``located in top left of the image``); with several objects the sizes are
the distinct sizes of the objects, smallest first (``small, medium``), and the locations one per object
(``center, right``); p7 ... p9 are lists (a list value means one is drawn at random, see
:func:`choose_prompt`), even with one definition.  An image without the object (an empty mask) gets
``"no {class}"`` for p1 ... p6 and ``["no {class}"]`` for p7 ... p9, as the released BKAI files do.

How each attribute is measured from the mask (built on :func:`~napari_vip.core.region_concepts.describe_mask`):

- **number**: its connected objects (8-connectivity, specks under 5 % of the largest not counted);
- **shape**: of the largest object: ``square`` (or ``rectangle`` when the sides differ by more than 20 %)
  when it fills at least :data:`RECTANGULARITY_MIN` of its smallest enclosing rectangle, else the region
  concept's ``round`` / ``oval`` / ``elongated`` / ``irregular``;
- **color**: the region concept's (the named colour nearest to the mean colour; ``bright`` / ``dark`` /
  ``similar`` on gray images);
- **size**: per object, its share of the image area (``tiny`` < 0.5 %, ``small`` < 3 %, ``medium`` < 15 %,
  else ``large``; :data:`~napari_vip.core.region_concepts.SIZE_THRESHOLDS`);
- **location**: per object, the cell of a 3 x 3 grid (thirds of the height and width) holding its centroid:
  ``top left``, ``top``, ``top right``, ``left``, ``center``, ``right``, ``bottom left``, ``bottom``,
  ``bottom right`` (the released files' nine names); objects in raster order of their first pixel.

Definitions (p7 ... p9) come from the caller (given, or the user's symptom-library file), else the released files'
definitions for their classes (:data:`MEDVLSM_DEFINITIONS`, verbatim, spelling included), else the symptom
library (:mod:`napari_vip.core.symptoms`).

Images are ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` gray), masks ``(H, W)`` bool, rows first.
"""

from __future__ import annotations

import random as _random
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import VipInputError
from .region_concepts import MIN_COMPONENT_FRACTION, SIZE_THRESHOLDS, describe_mask

LADDER_KEYS = tuple(f"p{i}" for i in range(10))
#: What ``--prompt`` / ``--prompts`` accept: a ladder key, or ``random`` (any key but the first, as released).
PROMPT_TYPES = LADDER_KEYS + ("random",)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
                "twenty")
SIZE_ORDER = ("tiny", "small", "medium", "large")
#: Grid cells (row third, column third) -> the released location names.
GRID_NAMES = (("top left", "top", "top right"), ("left", "center", "right"),
              ("bottom left", "bottom", "bottom right"))
#: Object area / area of its smallest enclosing (rotated) rectangle at or above which it is a square/rectangle
#: (a disc fills pi/4 = 0.785 of its square).
RECTANGULARITY_MIN = 0.9
SQUARE_MIN_SIDE_RATIO = 0.8

#: The definitions in the released annotation files (identical in every entry of a class), verbatim.
MEDVLSM_DEFINITIONS: dict[str, tuple[str, ...]] = {
    "polyp": ("a projecting growth of tissue", "often a bumpy flesh in rectum", "a small lump in the lining of colon",
              "a tissue growth that often resemble mushroom like stalks",
              "an abnormal growth of tissues projecting from a mucuos membrane"),
    "skin melanoma": ("a spot with dark speckles", "a spot with irregular texture",
                      "a dark sore with irregular texture", "an irregular sore with speckles",
                      "a rough wound on skin"),
    "foot ulcer": ("a wound in foot and toes", "a sore in foot and toes", "a sore in skin of foot and toes",
                   "an abnormailty in foot and toes", "an open sore or lesion in foot and toes"),
}


@dataclass
class LadderAttributes:
    """What the ladder says about a mask, and the measurements behind it.

    Attributes
    ----------
    class_name : str
    number : int
        Objects counted (0 for an empty mask).
    shape, color : str
        Of the largest object / the whole region.
    sizes : list of str
        Distinct object sizes, smallest first.
    locations : list of str
        One grid cell per object, raster order.
    definitions : list of str
    rectangularity : float
        Largest object's area / its smallest enclosing rectangle's area.
    notes : list of str
    """

    class_name: str
    number: int
    shape: str = ""
    color: str = ""
    sizes: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    rectangularity: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def number_word(n: int) -> str:
    """``1`` -> ``"one"`` ... ``20`` -> ``"twenty"``; digits above."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def grid_location(centroid_rc, hw: tuple[int, int]) -> str:
    """The released location name of a point ``(row, col)`` (pixels) on an image of shape ``hw``: the cell of the
    3 x 3 grid of thirds holding the pixel centre."""
    v = (float(centroid_rc[0]) + 0.5) / hw[0]
    u = (float(centroid_rc[1]) + 0.5) / hw[1]
    return GRID_NAMES[min(int(v * 3), 2)][min(int(u * 3), 2)]


def _size_of(fraction: float) -> str:
    for bound, name in SIZE_THRESHOLDS:
        if fraction < bound:
            return name
    return "large"


def min_rectangle(component: np.ndarray) -> tuple[float, float, float]:
    """``(area, long side, short side)`` of the smallest rotated rectangle enclosing the pixels (their corners) of
    a bool ``(h, w)`` crop (rotating calipers over the convex hull)."""
    from scipy.spatial import ConvexHull

    rr, cc = np.nonzero(component)
    pts = np.concatenate([np.stack([rr + dr, cc + dc], axis=1) for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)])
    pts = np.unique(pts.astype(np.float64), axis=0)
    hull = pts[ConvexHull(pts).vertices]
    edges = np.roll(hull, -1, axis=0) - hull
    edges = edges[np.hypot(edges[:, 0], edges[:, 1]) > 0]
    best = (np.inf, 0.0, 0.0)
    for e in edges:
        d = e / np.hypot(e[0], e[1])
        n = np.array([-d[1], d[0]])
        a, b = hull @ d, hull @ n
        la, lb = a.max() - a.min(), b.max() - b.min()
        if la * lb < best[0]:
            best = (float(la * lb), float(max(la, lb)), float(min(la, lb)))
    return best


def _objects(mask: np.ndarray):
    """Connected objects (8-connectivity) kept as region concepts count them, in raster order."""
    from skimage.measure import label, regionprops

    props = regionprops(label(mask, connectivity=2))  # label numbers follow raster order of first pixels
    largest = max(p.area for p in props)
    return [p for p in props if p.area >= MIN_COMPONENT_FRACTION * largest]


def ladder_definitions(class_name: str, definition=None, library=None) -> list[str]:
    """The definitions for p7 ... p9: ``definition`` (a string or a list) when given; else the class's entry in
    ``library`` (a ``dict`` or a symptom-library file) when one is given; else the released files' definitions
    (:data:`MEDVLSM_DEFINITIONS`); else the symptom library (the bundled one merged with the user's).  ``[]``
    when none is found."""
    from .symptoms import descriptors_for, load_library

    if definition is not None:
        items = [definition] if isinstance(definition, str) else list(definition)
        items = [" ".join(str(d).split()) for d in items]
        return [d for d in items if d]
    if library is not None:
        found = descriptors_for(library if isinstance(library, dict) else load_library(library), class_name)
        if found:
            return list(found)
    key = " ".join(class_name.lower().split())
    if key in MEDVLSM_DEFINITIONS:
        return list(MEDVLSM_DEFINITIONS[key])
    return list(descriptors_for(load_library(), class_name)) if library is None else []


def ladder_attributes(image_rgb, mask_bool, class_name: str, definition=None, library=None,
                      missing_definition: str = "raise") -> LadderAttributes:
    """Measure what the ladder needs (see the module docstring).

    Parameters
    ----------
    image_rgb : np.ndarray
        ``(H, W, 3)`` uint8 (or ``(H, W)`` gray).
    mask_bool : np.ndarray
        ``(H, W)``; non-zero pixels are the object(s).  An empty mask is allowed (the "no {class}" ladder).
    class_name : str
    definition : str or list of str, optional
        See :func:`ladder_definitions`.
    missing_definition : str
        ``"raise"`` (default): no definition found is an error; ``"omit"``: the ladder has no p7 ... p9 then
        (for a dock offering what it can), with a note.

    Raises
    ------
    VipInputError
        Empty class name, mask of another shape than the image, no definition to be found.
    """
    class_name = " ".join(str(class_name).split())
    if not class_name:
        raise VipInputError("Give the class the mask shows (e.g. polyp, skin melanoma): the ladder starts with it.")
    img = np.asarray(image_rgb)
    m = np.asarray(mask_bool)
    hw = img.shape[:2]
    if m.shape != hw:
        raise VipInputError(f"The mask has shape {m.shape} but the image is {hw} (rows, cols); use a mask made "
                            "on this image.")
    m = m != 0
    defs = ladder_definitions(class_name, definition, library)
    notes = []
    if not defs and missing_definition == "omit":
        notes.append(f"no definition of {class_name!r}: p7-p9 left out (give one, or add the class to the "
                     "symptom library)")
    elif not defs:
        raise VipInputError(f"No definition of {class_name!r} for p7-p9: give one (--definition TEXT, or "
                            "--definitions FILE: a symptom-library JSON with the class), or add the class to the "
                            "symptom library (napari-vip symptoms).")
    if not m.any():
        return LadderAttributes(class_name, 0, definitions=defs,
                                notes=notes + ["the mask is empty: 'no {class}' ladder"])
    rc = describe_mask(img, m, keyword=class_name, number_words=True)
    objects = _objects(m)
    largest = max(objects, key=lambda p: p.area)
    area, long_side, short_side = min_rectangle(largest.image)
    rect = float(largest.area) / area if area > 0 else 0.0
    if rect >= RECTANGULARITY_MIN and largest.area >= 4:
        shape = "square" if short_side >= SQUARE_MIN_SIDE_RATIO * long_side else "rectangle"
    else:
        shape = rc.shape
    total = float(m.size)
    sizes = {_size_of(p.area / total) for p in objects}
    return LadderAttributes(
        class_name=class_name, number=rc.number, shape=shape, color=rc.color,
        sizes=[s for s in SIZE_ORDER if s in sizes],
        locations=[grid_location(p.centroid, hw) for p in objects], definitions=defs,
        rectangularity=rect, notes=notes + list(rc.notes))


def ladder_from_attributes(a: LadderAttributes) -> dict[str, str | list[str]]:
    """``{"p0": ..., ..., "p9": ...}`` worded as the released annotation files (module docstring); without
    definitions (``missing_definition="omit"``), p7 ... p9 are left out of a non-empty mask's ladder."""
    c = a.class_name
    if a.number == 0:
        none = f"no {c}"
        return {"p0": "", **{f"p{i}": none for i in range(1, 7)}, **{f"p{i}": [none] for i in range(7, 10)}}
    p2 = f"{a.shape} {c}"
    p3 = f"{a.color} {p2}"
    p4 = f"{', '.join(a.sizes)} {p3}"
    p5 = f"{number_word(a.number)} {p4}"
    where = f"located in {', '.join(a.locations)} of the image"
    ladder = {"p0": "", "p1": c, "p2": p2, "p3": p3, "p4": p4, "p5": p5, "p6": f"{p5}, {where}"}
    if not a.definitions:
        return ladder
    return {**ladder, "p7": [f"{c} which is {d}" for d in a.definitions],
            "p8": [f"{p5} which is {d}" for d in a.definitions],
            "p9": [f"{p5} which is {d} {where}" for d in a.definitions]}


def prompt_ladder(image_rgb, mask_bool, class_name: str, definition=None, library=None,
                  missing_definition: str = "raise") -> dict[str, str | list[str]]:
    """The ten prompts p0 ... p9 for ``mask_bool`` on ``image_rgb`` (see :func:`ladder_attributes` for the
    arguments and errors); list values are p7 ... p9, one entry per definition."""
    return ladder_from_attributes(ladder_attributes(image_rgb, mask_bool, class_name, definition, library,
                                                    missing_definition))


def choose_prompt(prompts: dict, prompt_type: str, rng: _random.Random | None = None) -> str:
    """One prompt of an image's ladder, as the released data module draws it.

    ``prompt_type`` ``"random"`` picks any value but the first (the released files put p0 first), then a list
    value gives one of its entries at random (``rng.choice``, as ``random.choice`` in the released code).

    Raises
    ------
    VipInputError
        A prompt type the ladder does not have, or an empty list.
    """
    rng = rng or _random.Random()
    if prompt_type == "random":
        values = list(prompts.values())[1:]
        if not values:
            raise VipInputError("Prompt type 'random' needs at least two prompts (p0 and another).")
        value = rng.choice(values)
    elif prompt_type in prompts:
        value = prompts[prompt_type]
    else:
        raise VipInputError(f"No prompt {prompt_type!r}; the prompts are {', '.join(prompts) or 'none'} "
                            "(or 'random').")
    if isinstance(value, (list, tuple)):
        if not value:
            raise VipInputError(f"Prompt {prompt_type!r} is an empty list.")
        value = rng.choice(list(value))
    return str(value)
