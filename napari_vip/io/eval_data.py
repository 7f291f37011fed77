"""Labelled samples for dataset evaluation: the project's CSV, a folder per class, or a public layout.

One sample is an image file, its label and an optional box.  Boxes are ``(x0, y0, x1, y1)`` in pixels of the
stored image (x = column, y = row).  Rows that cannot be used are skipped and listed in
:attr:`EvalData.skipped` with their path and reason; they are never fatal and never silent.

The project's CSV has a header row with ``path,label`` and optionally ``x0,y0,x1,y1``, ``patient_id`` and
``split``; relative paths are relative to the CSV's folder.  The public layouts are read by
:mod:`napari_vip.io.eval_adapters`.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.datasets import IMAGE_SUFFIXES
from ..core.errors import VipInputError

#: Image file endings a class folder may hold (besides DICOM files without an ending).
EVAL_SUFFIXES = IMAGE_SUFFIXES + (".dcm", ".nii", ".nii.gz", ".img")


@dataclass(frozen=True)
class EvalSample:
    """One labelled image.

    Attributes
    ----------
    id : str
        Unique within the data set.
    path : str
        The image file.
    label : str
        Class name.
    box_xyxy : (float, float, float, float) or None
        ``(x0, y0, x1, y1)`` pixels of the stored image; ``None`` when the data set has no boxes.
    patient_id : str or None
        Bootstrap resampling unit when given.
    split : str or None
    released_crop : bool
        Crop around the box as the released VinDr-CXR / NIH14 loaders do, scaled with the image's axes swapped
        (:func:`napari_vip.core.paper_render.released_crop_box`; set by ``--released-quirks``).
    """

    id: str
    path: str
    label: str
    box_xyxy: tuple | None = None
    patient_id: str | None = None
    split: str | None = None
    released_crop: bool = False


@dataclass
class EvalData:
    """Samples, their classes (sorted, as the released code does) and what was skipped."""

    classes: list[str]
    samples: list[EvalSample]
    source: str
    source_sha256: str | None = None
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    layout: str = "csv"

    @property
    def has_boxes(self) -> bool:
        return bool(self.samples) and all(s.box_xyxy is not None for s in self.samples)

    def skip(self, path, reason: str) -> None:
        self.skipped.append({"path": str(path), "reason": reason})


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def finish(samples: list[EvalSample], skipped: list[dict], source, layout: str,
           classes: list[str] | None = None) -> EvalData:
    """Drop samples whose file is missing or whose label is outside ``classes``; sort the classes.

    Raises
    ------
    VipInputError
        Fewer than two classes remain.
    """
    data = EvalData([], [], str(source), file_sha256(source) if Path(source).is_file() else None,
                    list(skipped), layout)
    wanted = set(classes) if classes else None
    for s in samples:
        if wanted is not None and s.label not in wanted:
            data.skip(s.path, f"label {s.label!r} is not one of the classes {sorted(wanted)}")
        elif not Path(s.path).exists():
            data.skip(s.path, "file does not exist")
        else:
            data.samples.append(s)
    data.classes = list(classes) if classes else sorted({s.label for s in data.samples})
    if len(data.classes) < 2:
        raise VipInputError(
            f"{str(source)!r} gives {len(data.classes)} class(es) with usable samples "
            f"({', '.join(data.classes) or 'none'}); evaluation needs at least 2. "
            + ("Skipped: " + "; ".join(f"{d['path']} ({d['reason']})" for d in data.skipped[:5]) + "."
               if data.skipped else ""))
    return data


def _resolve(base: Path, p: str) -> str:
    f = Path(p).expanduser()
    return str(f if f.is_absolute() or "://" in p else base / f)


def read_eval_csv(path, classes: list[str] | None = None) -> EvalData:
    """The project's CSV: header ``path,label[,x0,y0,x1,y1][,patient_id][,split]``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VipInputError(f"Could not read the CSV {str(path)!r}: {exc}.") from None
    header = set(rows[0]) if rows else set()
    if not {"path", "label"} <= header:
        raise VipInputError(f"{str(path)!r} needs a header row with at least path,label "
                            "(and x0,y0,x1,y1 for boxes, optional patient_id, split); found "
                            f"{sorted(h for h in header if h)}.")
    has_box = {"x0", "y0", "x1", "y1"} <= header
    samples, skipped = [], []
    for n, row in enumerate(rows, start=2):
        p, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        where = p or f"{path.name} line {n}"
        if not p or not label:
            skipped.append({"path": where, "reason": f"line {n}: empty path or label"})
            continue
        box = None
        if has_box:
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (TypeError, ValueError):
                skipped.append({"path": where, "reason": f"line {n}: box is not four numbers"})
                continue
            if not (box[2] > box[0] and box[3] > box[1]):
                skipped.append({"path": where, "reason": f"line {n}: box {box} has no area (need x1>x0, y1>y0)"})
                continue
        samples.append(EvalSample(f"{n - 1}", _resolve(path.parent, p), label, box,
                                  (row.get("patient_id") or "").strip() or None,
                                  (row.get("split") or "").strip() or None))
    return finish(samples, skipped, path, "csv", classes)


def read_eval_folder(root, classes: list[str] | None = None) -> EvalData:
    """A folder with one sub-folder of images per class (no boxes)."""
    root = Path(root)
    samples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(sub.rglob("*")):
            if f.is_file() and not f.name.startswith(".") and (
                    f.name.lower().endswith(EVAL_SUFFIXES) or "." not in f.name):
                samples.append(EvalSample(str(f.relative_to(root)), str(f), sub.name))
    return finish(samples, [], root, "folder", classes)
