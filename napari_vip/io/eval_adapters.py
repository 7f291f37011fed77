"""Public chest X-ray metadata files read as evaluation samples, given the user's local image folder.

Layouts (as published, and as the released code of Denner et al. reads them):

``nih14``
    NIH ChestX-ray14 ``BBox_List_2017.csv``: ``Image Index, Finding Label, Bbox [x, y, w, h]`` (plus empty
    trailing columns).  Box ``(x, y, x + w, y + h)``.
``vindr``
    VinDr-CXR ``annotations_train.csv`` / ``annotations_test.csv``: ``image_id, rad_id, class_name, x_min,
    y_min, x_max, y_max`` (the test file has no ``rad_id``).  ``No finding`` rows are dropped; an image where
    one reader (or, without ``rad_id``, the consensus) marked the same finding more than once is dropped, as
    in the released code.  Several readers' boxes of one finding become one sample whose box is the
    smallest box holding them all.  Images are ``IMAGES/<image_id>.dicom`` (or ``.dcm``, ``.png``).
``padchest-gr``
    PadChest-GR grounded reports JSON: a list of ``{"ImageID", "findings": [{"labels": [...], "boxes":
    [[x0, y0, x1, y1], ...]}]}`` with boxes as fractions of the image size.  With ``metadata`` (the CSV of
    ``ImageID, label_group, label``), one sample per row, labelled ``label_group``, boxed by the first box of
    the first finding naming ``label``; without, one sample per finding with a box, labelled by its first label.
``jsrt``
    JSRT nodule list (``CLNDAT_EN.txt``): tab-separated, no header: file name, nodule size (mm), subtlety,
    age, sex, x, y, malignancy, location, diagnosis.  Label = malignancy; box = the centre
    ``± 5 * int(size / 0.175)`` pixels, as the released code draws it.  Images are the data set's own
    ``.IMG`` files (:mod:`napari_vip.io.jsrt`), rendered by the ``paper`` recipe as the released JSRT
    loader renders them, and prompted as ``JSRTDataset.generate_text_prompt`` prompts them
    (:data:`LAYOUT_TEMPLATES`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..core.errors import VipInputError
from .eval_data import EvalData, EvalSample, finish

LAYOUTS = ("nih14", "vindr", "padchest-gr", "jsrt")
#: Prompt template of a layout whose released loader has its own (the others use the default template).
LAYOUT_TEMPLATES = {"jsrt": "A chest X-ray with a {c} lung nodule{suffix}."}
#: Layouts whose released loader crops around a box scaled with the image's axes swapped
#: (:func:`napari_vip.core.paper_render.released_crop_box`).
SWAPPED_CROP_LAYOUTS = ("nih14", "vindr")

#: JSRT pixel pitch in mm.
JSRT_PIXEL_MM = 0.175


def layout_template(layout: str | None) -> str:
    """The prompt template the released code uses for ``layout``: its own for JSRT, else the default."""
    from ..core.prompts import DEFAULT_TEMPLATE

    return LAYOUT_TEMPLATES.get(layout or "", DEFAULT_TEMPLATE)


def _rows(path: Path, **kw) -> list:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f, **kw))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VipInputError(f"Could not read {str(path)!r}: {exc}.") from None


def _dicts(path: Path, required: set[str], layout: str) -> list[dict]:
    rows = _rows(path)
    if not rows or not required <= {h.strip() for h in rows[0]}:
        raise VipInputError(f"{str(path)!r} is not a {layout} file: its header needs {sorted(required)}, "
                            f"found {[h for h in (rows[0] if rows else []) if h]}.")
    head = [h.strip() for h in rows[0]]
    return [dict(zip(head, (c.strip() for c in r))) for r in rows[1:] if any(c.strip() for c in r)]


def _image(images: Path, stem: str) -> Path:
    for name in (stem, stem + ".dicom", stem + ".dcm", stem + ".png", stem + ".jpg"):
        if (images / name).exists():
            return images / name
    return images / stem


def _floats(values, where: str, skipped: list) -> tuple | None:
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        skipped.append({"path": where, "reason": f"box {list(values)} is not numbers"})
        return None


def read_nih14(path: Path, images: Path, classes=None) -> EvalData:
    samples, skipped = [], []
    for n, r in enumerate(_dicts(path, {"Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"}, "nih14")):
        f = images / r["Image Index"]
        xywh = _floats((r["Bbox [x"], r["y"], r["w"], r["h]"]), str(f), skipped)
        if xywh is None:
            continue
        x, y, w, h = xywh
        samples.append(EvalSample(f"{r['Image Index']}:{n}", str(f), r["Finding Label"], (x, y, x + w, y + h),
                                  r["Image Index"].rsplit("_", 1)[0]))
    return finish(samples, skipped, path, "nih14", classes)


def read_vindr(path: Path, images: Path, classes=None) -> EvalData:
    rows = _dicts(path, {"image_id", "class_name", "x_min", "y_min", "x_max", "y_max"}, "vindr")
    rows = [r for r in rows if r["class_name"] != "No finding"]
    counts: dict = {}
    for r in rows:
        key = (r["image_id"], r["class_name"], r.get("rad_id"))
        counts[key] = counts.get(key, 0) + 1
    repeated = {k[0] for k, v in counts.items() if v > 1}
    skipped = [{"path": str(_image(images, i)), "reason": "a reader marked the same finding more than once "
                "(dropped as in the released code)"} for i in sorted(repeated)]
    boxes: dict = {}
    for r in rows:
        if r["image_id"] in repeated:
            continue
        f = str(_image(images, r["image_id"]))
        box = _floats((r["x_min"], r["y_min"], r["x_max"], r["y_max"]), f, skipped)
        if box is not None:
            boxes.setdefault((r["image_id"], r["class_name"]), []).append(box)
    samples = []
    for (image_id, label), bs in boxes.items():
        union = (min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs))
        samples.append(EvalSample(f"{image_id}:{label}", str(_image(images, image_id)), label, union, image_id))
    return finish(samples, skipped, path, "vindr", classes)


def _image_size(path: Path) -> tuple[int, int] | None:
    """``(width, height)`` of an image file, or None when it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - any unreadable file is reported by the caller
        try:
            from .open_image import plane_from_file

            plane = plane_from_file(path).data
            return plane.shape[1], plane.shape[0]
        except Exception:  # noqa: BLE001
            return None


def read_padchest_gr(path: Path, images: Path, classes=None, metadata: str | None = None) -> EvalData:
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VipInputError(f"Could not read the PadChest-GR grounded reports {str(path)!r}: {exc}.") from None
    if not isinstance(entries, list):
        raise VipInputError(f"{str(path)!r} is not PadChest-GR grounded reports: expected a JSON list of "
                            "{ImageID, findings} entries.")
    by_id = {e["ImageID"]: e for e in entries if isinstance(e, dict) and "ImageID" in e}
    wanted = ([(r["ImageID"], r["label_group"], r["label"])
               for r in _dicts(Path(metadata), {"ImageID", "label_group", "label"}, "padchest-gr metadata")]
              if metadata else None)
    samples, skipped = [], []

    def add(image_id, label, frac, n):
        f = images / image_id
        size = _image_size(f) if f.exists() else None
        if size is None:
            skipped.append({"path": str(f), "reason": "file does not exist or cannot be read"})
            return
        w, h = size
        samples.append(EvalSample(f"{image_id}:{n}", str(f), label,
                                  (frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h), image_id))

    if wanted is None:
        for image_id, e in by_id.items():
            for n, finding in enumerate(e.get("findings") or []):
                if finding.get("labels") and finding.get("boxes"):
                    add(image_id, finding["labels"][0], finding["boxes"][0], n)
    else:
        for n, (image_id, group, label) in enumerate(wanted):
            box = next((fd["boxes"][0] for fd in (by_id.get(image_id, {}).get("findings") or [])
                        if label in (fd.get("labels") or []) and fd.get("boxes")), None)
            if box is None:
                skipped.append({"path": str(images / image_id), "reason": f"no grounded box for {label!r}"})
            else:
                add(image_id, group, box, n)
    return finish(samples, skipped, path, "padchest-gr", classes)


def read_jsrt(path: Path, images: Path, classes=None) -> EvalData:
    samples, skipped = [], []
    for n, r in enumerate(_rows(path, delimiter="\t")):
        r = [c.strip() for c in r]
        if len(r) < 8 or not r[0]:
            continue
        f = str(images / r[0])
        vals = _floats((r[1], r[5], r[6]), f, skipped)
        if vals is None:
            continue
        size_mm, x, y = vals
        half = 5 * int(size_mm / JSRT_PIXEL_MM)
        samples.append(EvalSample(f"{r[0]}:{n}", f, r[7], (x - half, y - half, x + half, y + half), r[0]))
    return finish(samples, skipped, path, "jsrt", classes)


def read_public(path, layout: str, images, classes=None, metadata: str | None = None) -> EvalData:
    """Samples from a public metadata file; ``images`` is the folder holding its images."""
    if layout not in LAYOUTS:
        raise VipInputError(f"Unknown data layout {layout!r}; choose csv, folder or one of {', '.join(LAYOUTS)}.")
    if not images:
        raise VipInputError(f"The {layout} layout needs the folder of your local copy of its images (--images).")
    images = Path(images).expanduser()
    path = Path(path)
    if layout == "nih14":
        return read_nih14(path, images, classes)
    if layout == "vindr":
        return read_vindr(path, images, classes)
    if layout == "jsrt":
        return read_jsrt(path, images, classes)
    return read_padchest_gr(path, images, classes, metadata)
