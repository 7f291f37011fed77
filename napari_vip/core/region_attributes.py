"""Region attributes and the attribute sentence of CoTexNet (He et al., Engineering 2026; code Rango-bit/CoTexNet).

CoTexNet describes each training region in five attributes ``{number, location, shape, size, color}`` and
writes them into one sentence, which its text tower encodes during training.  The attributes come either
from a multimodal model (the released pipeline asks LLaVA-1.5 about the ROI image; our client is
:mod:`napari_vip.models.region_describer`) or are measured from the mask and image with the region
concepts (:mod:`napari_vip.core.region_concepts`).  This module holds everything about them that needs
no model: the ROI image, the region count the answer is checked against, the released question, the
check of an answer, the released sentence, and the editable CSV of sentences.

As released (``llava_inference/*.py``, ``data_process/make_ROI_img.py``):

- ROI image = the image where the mask is set, 0 (black) elsewhere (``cv2.add(img, 0, mask=mask)``);
- region count = number of external contours of the mask (``cv2.findContours(RETR_EXTERNAL)`` on the
  mask thresholded at 127): 8-connected objects, an object inside another's hole not counted;
- the question: ``"The image shows the " + keyword + "s. " + GENERATE_PROMPT``;
- an answer is accepted when, with one leading ``[`` and one trailing ``]`` removed, it evaluates as a
  Python literal (``ast.literal_eval``; JSON objects do) to a dict with exactly the five keys; a
  ``number`` above the region count is set to the region count; any other answer is asked again;
- the sentence (``text_to_csv.check_csv``)::

      f"{number} {shape} {size} {color} {keyword}, located in the {location} {loc_describe}"

  with ``keyword + "s"`` when ``int(number) > 1``, ``"of the image"``/``"of image"`` removed from the
  location, ``loc_describe`` = ``"."`` when the location still names the image, else ``"of the image."``;
  a location given as ``[x_min, y_min, x_max, y_max]`` (ratios) is named by
  :func:`position_description` first.  E.g. ``"1 oval large pink polyp area, located in the center of
  the image."``.

Images are ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` gray), masks ``(H, W)``, non-zero = region; rows first.
"""

from __future__ import annotations

import ast
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VipInputError

#: The five attribute keys an answer must have, exactly.
ATTRIBUTE_KEYS = ("number", "location", "shape", "size", "color")

#: The released keyword per data set (``llava_inference/get_text.py``, ``keywords_dict``).
KEYWORDS = {
    "kvasir": "polyp area",
    "clinicdb": "polyp area",
    "bkai": "polyp area",
    "busi": "tumor area",
    "dfu": "ulcer area",
    "isic": "skin lesion area",
    "DDTI": "focal area",
    "GLaS": "tissue area",
}

#: The released instruction (``llava_inference/llava_vqa_13b.py``, ``generate_prompt``), word for word.
GENERATE_PROMPT = (
    "Please provide a single JSON format message containing a general description of the area information "
    "(only one result is needed). "
    "Use the following format: {'number': xxx, 'location': xxx, 'shape': xxx, 'size': xxx, 'color': xxx}. "
    "Note: Use words in the 'location' item to describe the approximate location of the region in the image. "
    "Only one description should be provided.")

#: Columns of the sentence CSV, in order.  The user edits ``sentence``; the rest says where it came from.
CSV_COLUMNS = ("sample_id", "sentence", "number", "location", "shape", "size", "color", "source", "answer")


def keyword_for(dataset: str) -> str:
    """The released keyword of a data set name (case-insensitive), e.g. ``"kvasir"`` -> ``"polyp area"``."""
    for name, kw in KEYWORDS.items():
        if name.lower() == str(dataset).strip().lower():
            return kw
    raise VipInputError(f"No released keyword for the data set {dataset!r}; the released ones are "
                        f"{', '.join(KEYWORDS)}. Give the keyword yourself (e.g. --keyword \"polyp area\").")


def question(keyword: str) -> str:
    """The released question about a ROI image: ``"The image shows the " + keyword + "s. " + GENERATE_PROMPT``."""
    keyword = " ".join(str(keyword).split())
    if not keyword:
        raise VipInputError("Give the keyword naming the region (e.g. \"polyp area\").")
    return "The image shows the " + keyword + "s. " + GENERATE_PROMPT


def binary_mask(mask, hw: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W)`` bool, non-zero = region; ``hw`` checks the shape against the image's ``(H, W)``."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[-1] in (3, 4):
        m = m[..., :3].any(axis=-1)
    if m.ndim != 2:
        raise VipInputError(f"A region mask must be (H, W); got shape {m.shape}.")
    if hw is not None and m.shape != tuple(hw):
        raise VipInputError(f"The mask has shape {m.shape} but the image is {tuple(hw)} (rows, cols); use the "
                            "mask made on this image.")
    return m != 0


def roi_image(image, mask) -> np.ndarray:
    """The ROI image: ``image`` where ``mask`` is set, 0 elsewhere (as released).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB, or (H, W) gray (repeated to three channels)
    mask : (H, W), non-zero = region

    Returns
    -------
    (H, W, 3) uint8
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise VipInputError(f"A ROI image needs an (H, W, 3) RGB or (H, W) gray image; got shape {img.shape}.")
    img = img[..., :3]
    if img.dtype != np.uint8:
        raise VipInputError(f"A ROI image needs uint8 pixels (0-255); got {img.dtype}.")
    m = binary_mask(mask, img.shape[:2])
    return np.where(m[..., None], img, np.uint8(0)).astype(np.uint8)


def external_contour_count(mask) -> int:
    """Number of external contours of a mask, as ``cv2.findContours(mask, RETR_EXTERNAL, ...)`` counts them.

    OpenCV follows borders of 8-connected objects and, with ``RETR_EXTERNAL``, keeps only the outermost:
    an object lying in another object's hole is not counted.  Computed here by filling the holes
    (background 4-connected to the image border stays background) and counting the 8-connected objects.
    """
    from scipy import ndimage

    m = binary_mask(mask)
    if not m.any():
        return 0
    filled = ndimage.binary_fill_holes(m)
    _, n = ndimage.label(filled, structure=np.ones((3, 3), dtype=bool))
    return int(n)


def position_description(ratio_coords, tolerance: float = 0.1) -> str:
    """The released name of a box's position (``text_to_csv.get_position_description``).

    ``ratio_coords`` = ``(x_min, y_min, x_max, y_max)`` as fractions of the image width/height.
    ``center`` when the box centre is within ``tolerance`` of (0.5, 0.5) in both directions, else
    ``top left``, ``bottom left``, ``left``, ``top right``, ``bottom right``, ``right``, ``top center``
    or ``bottom center``.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in ratio_coords)
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    if abs(cx - 0.5) <= tolerance and abs(cy - 0.5) <= tolerance:
        return "center"
    if cx < 0.5:
        return "top left" if cy < 0.5 else ("bottom left" if cy > 0.5 else "left")
    if cx > 0.5:
        return "top right" if cy < 0.5 else ("bottom right" if cy > 0.5 else "right")
    return "top center" if cy < 0.5 else "bottom center"


class AnswerRejected(ValueError):
    """A multimodal model's answer that the released check refuses; ``str(exc)`` says why."""


@dataclass
class RegionAttributes:
    """The five attributes of one region and where they came from.

    ``number`` is kept as given (an int, or what the model wrote when it is not an int above the
    region count); ``location`` is a phrase.  ``corrections`` lists what the check changed
    (``"number 3 > 1 region(s) in the mask: set to 1"``).  ``source`` is ``"mask"`` or ``"llm:<model>"``.
    """

    number: object
    location: str
    shape: str
    size: str
    color: str
    source: str = "mask"
    answer: str = ""
    corrections: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ATTRIBUTE_KEYS}

    def sentence(self, keyword: str) -> str:
        """The released sentence (:func:`attribute_sentence`)."""
        return attribute_sentence(self.as_dict(), keyword)

    def to_dict(self) -> dict:
        return {**self.as_dict(), "source": self.source, "answer": self.answer,
                "corrections": list(self.corrections)}

    @classmethod
    def from_dict(cls, d: dict) -> RegionAttributes:
        return cls(number=d["number"], location=str(d["location"]), shape=str(d["shape"]), size=str(d["size"]),
                   color=str(d["color"]), source=str(d.get("source", "mask")), answer=str(d.get("answer", "")),
                   corrections=list(d.get("corrections", [])))


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*(.*?)\s*```\s*$", re.S)


def strip_brackets(text: str) -> str:
    """The released ``get_list_out``: drop one leading ``[`` and one trailing ``]``."""
    if text[:1] == "[":
        text = text[1:]
    if text[-1:] == "]":
        text = text[:-1]
    return text


def check_answer(text: str, region_count: int) -> RegionAttributes:
    """Check a multimodal model's answer as released (``llava_model.check_output``) and correct its number.

    ``text`` is stripped, a Markdown code fence around it removed (chat models add them; LLaVA did not),
    then one leading ``[`` / trailing ``]`` removed twice (the released loop and check each do it once)
    and evaluated with ``ast.literal_eval``.  Refused (:class:`AnswerRejected`): not a literal, not a
    dict, keys other than exactly the five, a number that is not a number, a location that is neither
    text nor a ``[x_min, y_min, x_max, y_max]`` box.  A number whose ``int()`` exceeds ``region_count``
    is set to ``region_count``.  A box location is named by :func:`position_description`.
    """
    raw = str(text or "").strip()
    m = _FENCE.match(raw)
    body = strip_brackets(strip_brackets(m.group(1) if m else raw).strip())
    if not body:
        raise AnswerRejected("the answer is empty")
    try:
        value = ast.literal_eval(body)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise AnswerRejected(f"not a dict literal: {body[:80]!r}") from None
    if not isinstance(value, dict):
        raise AnswerRejected(f"the answer is a {type(value).__name__}, not a dict")
    if set(value) != set(ATTRIBUTE_KEYS) or len(value) != len(ATTRIBUTE_KEYS):
        missing = [k for k in ATTRIBUTE_KEYS if k not in value]
        extra = [str(k) for k in value if k not in ATTRIBUTE_KEYS]
        raise AnswerRejected("the dict is incomplete" + (f"; missing {missing}" if missing else "")
                             + (f"; unexpected {extra}" if extra else ""))
    number = value["number"]
    try:
        n_int = int(number) if not isinstance(number, str) else int(float(number.strip()))
    except (TypeError, ValueError, OverflowError):
        raise AnswerRejected(f"number {number!r} is not a number") from None
    corrections = []
    if n_int > int(region_count):
        corrections.append(f"number {number} > {int(region_count)} region(s) in the mask: set to {int(region_count)}")
        number = int(region_count)
    location = value["location"]
    if isinstance(location, (list, tuple)):
        try:
            location = position_description(location)
        except (TypeError, ValueError):
            raise AnswerRejected(f"location {value['location']!r} is neither words nor a box") from None
        corrections.append(f"location box {list(value['location'])} named {location!r}")
    elif not isinstance(location, str):
        raise AnswerRejected(f"location {location!r} is neither words nor a box")
    return RegionAttributes(number=number, location=location, shape=str(value["shape"]), size=str(value["size"]),
                            color=str(value["color"]), answer=raw, corrections=corrections)


def attribute_sentence(attributes: dict, keyword: str) -> str:
    """The released sentence from the five attributes (``text_to_csv.check_csv``), character for character.

    ``f"{number} {shape} {size} {color} {keyword}, located in the {location} {loc_describe}"``: the
    keyword gets an ``s`` when ``int(number) > 1``; ``"of the image"`` and ``"of image"`` are removed from
    the location; ``loc_describe`` is ``"."`` when the location still contains ``image``, else
    ``"of the image."``.  (A location ``"left side of the image"`` thus gives ``"located in the left side
    of the image."`` with two spaces, as in the released Kvasir file.)
    """
    location = attributes["location"]
    if isinstance(location, (list, tuple)):
        location = position_description(location)
    number = attributes["number"]
    location = str(location).replace("of the image", "").replace("of image", "")
    try:
        many = int(float(number)) > 1
    except (TypeError, ValueError):
        raise VipInputError(f"The region's number {number!r} is not a number.") from None
    kw = keyword + "s" if many else keyword
    loc_describe = "." if "image" in location else "of the image."
    return f"{number} {attributes['shape']} {attributes['size']} {attributes['color']} {kw}, located in the {location} {loc_describe}"


def mask_attributes(image, mask) -> RegionAttributes:
    """The five attributes measured from the mask and image (no model).

    ``number`` = :func:`external_contour_count` (as the released check counts regions); shape, size,
    colour and location from :func:`napari_vip.core.region_concepts.describe_mask` (its thresholds and
    names: ``round``/``oval``/``elongated``/``irregular``, ``tiny``..``large``, named colours or
    ``bright``/``dark``/``similar``, ``center``/``top left``/...).
    """
    from .region_concepts import describe_mask

    rc = describe_mask(image, mask, keyword="region")
    return RegionAttributes(number=external_contour_count(mask), location=rc.location, shape=rc.shape,
                            size=rc.size, color=rc.color, source="mask")


@dataclass
class SentenceRow:
    """One row of the sentence CSV: a sample, its sentence (what training reads) and its attributes."""

    sample_id: str
    sentence: str
    attributes: RegionAttributes | None = None

    def to_row(self) -> dict:
        a = self.attributes
        row = {"sample_id": self.sample_id, "sentence": self.sentence}
        for k in ATTRIBUTE_KEYS:
            row[k] = "" if a is None else str(getattr(a, k))
        row["source"] = "" if a is None else a.source
        row["answer"] = "" if a is None else a.answer
        return row


def write_sentence_csv(path, rows: list[SentenceRow]) -> Path:
    """Write the sentences (columns :data:`CSV_COLUMNS`, UTF-8, a header row); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow(r.to_row())
    tmp.replace(path)
    return path


def read_sentence_csv(path) -> dict[str, str]:
    """``{sample_id: sentence}`` from a sentence CSV (edited or not).

    Only ``sample_id`` and ``sentence`` are required; other columns are ignored.  A missing file or
    column, an empty sentence or a repeated sample id is a :class:`VipInputError` naming the file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"Sentence file {path} does not exist; write one with `napari-vip sentences`.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for c in ("sample_id", "sentence"):
            if c not in cols:
                raise VipInputError(f"Sentence file {path} has no {c!r} column (columns: {cols}); it needs "
                                    "sample_id and sentence.")
        out: dict[str, str] = {}
        for i, row in enumerate(reader, start=2):
            sid = (row.get("sample_id") or "").strip()
            sentence = (row.get("sentence") or "").strip()
            if not sid:
                raise VipInputError(f"Sentence file {path}, row {i}: empty sample_id.")
            if not sentence:
                raise VipInputError(f"Sentence file {path}, row {i} ({sid}): empty sentence.")
            if sid in out:
                raise VipInputError(f"Sentence file {path}, row {i}: sample {sid!r} appears twice.")
            out[sid] = sentence
    return out

