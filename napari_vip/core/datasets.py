"""Labelled image sets for prompt learning: a folder per class, or a CSV of ``path,label[,x0,y0,x1,y1]``.

No torch here.  :func:`load_labelled` scans the input and reports what it had to leave out (empty
class folders, unreadable images, unknown labels, missing files) instead of failing on the first
problem; it raises :class:`~napari_vip.core.errors.VipInputError` only when nothing sensible is left
(fewer than two classes with images).

Boxes are ``(x0, y0, x1, y1)`` in pixel coordinates of the image file (x = column, y = row), as in
:mod:`napari_vip.core.coords`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import VipInputError

#: File name endings read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".npy")


@dataclass
class DatasetReport:
    """What :func:`load_labelled` left out, and why.  ``lines()`` gives one sentence per problem."""

    empty_classes: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    missing_files: list[str] = field(default_factory=list)
    unknown_labels: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, label)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, reason)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.empty_classes or self.unreadable or self.missing_files or self.unknown_labels
                    or self.bad_rows)

    def lines(self, limit: int = 5) -> list[str]:
        def some(items):
            items = [str(i) for i in items]
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        out = []
        if self.empty_classes:
            out.append(f"class folder(s) with no images, left out: {some(self.empty_classes)}")
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable image(s) skipped: "
                       f"{some(f'{p} ({why})' for p, why in self.unreadable)}")
        if self.missing_files:
            out.append(f"{len(self.missing_files)} file(s) listed in the CSV do not exist, skipped: "
                       f"{some(self.missing_files)}")
        if self.unknown_labels:
            out.append(f"{len(self.unknown_labels)} CSV row(s) with a label outside the chosen classes, skipped: "
                       f"{some(f'line {n}: {lab!r}' for n, lab in self.unknown_labels)}")
        if self.bad_rows:
            out.append(f"{len(self.bad_rows)} malformed CSV row(s) skipped: "
                       f"{some(f'line {n}: {why}' for n, why in self.bad_rows)}")
        return out

    def to_dict(self) -> dict:
        return {"empty_classes": list(self.empty_classes),
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
                "missing_files": list(self.missing_files),
                "unknown_labels": [{"line": n, "label": lab} for n, lab in self.unknown_labels],
                "bad_rows": [{"line": n, "reason": r} for n, r in self.bad_rows],
                "ignored_files": list(self.ignored_files)}


@dataclass
class LabelledImages:
    """Image files with their class index.

    Attributes
    ----------
    classes : list of str
        Class names, in label-index order (sorted folder names, or first appearance in the CSV).
    paths : list of str
    labels : np.ndarray
        ``(N,)`` int64 index into ``classes``.
    boxes : list
        Per image ``(x0, y0, x1, y1)`` crop box in pixels, or ``None`` for the whole image.
    source : str
    report : DatasetReport
    """

    classes: list[str]
    paths: list[str]
    labels: np.ndarray
    boxes: list
    source: str
    report: DatasetReport = field(default_factory=DatasetReport)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == k).sum()) for k, c in enumerate(self.classes)}

    def subset(self, index) -> LabelledImages:
        index = np.asarray(index, dtype=np.int64)
        return LabelledImages(self.classes, [self.paths[i] for i in index], self.labels[index],
                              [self.boxes[i] for i in index], self.source, self.report)

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8 RGB, cropped to its box.  Raises VipInputError if unreadable."""
        return read_rgb(self.paths[i], self.boxes[i])


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def read_rgb(path, box_xyxy=None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB: 8-bit images as stored, others windowed to their min/max.

    ``box_xyxy`` crops to ``(x0, y0, x1, y1)`` pixel centres, both ends included.
    """
    from .coords import clip_box_xyxy
    from .image import to_model_rgb

    p = Path(path)
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                if im.mode in ("P", "LA", "PA", "CMYK", "YCbCr", "HSV", "1"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                arr = np.asarray(im)
    except Exception as exc:
        raise VipInputError(f"cannot read {str(p)!r}: {str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}") from None
    if box_xyxy is not None:
        (x0, y0, x1, y1), _ = clip_box_xyxy(box_xyxy, arr.shape[:2])
        arr = arr[int(np.floor(y0)):int(np.ceil(y1)) + 1, int(np.floor(x0)):int(np.ceil(x1)) + 1]
    # 8-bit files are shown as stored; deeper ones (16-bit, float) are windowed to their own min/max
    return to_model_rgb(arr, contrast_limits=(0, 255) if arr.dtype == np.uint8 else None).rgb


def scan_folder(root, check_readable: bool = True) -> LabelledImages:
    """A folder with one sub-folder of images per class (sub-folder name = class name)."""
    root = Path(root)
    report = DatasetReport()
    classes, paths, labels = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if _is_image(p))
        report.ignored_files += [str(p) for p in sorted(sub.rglob("*"))
                                 if p.is_file() and not _is_image(p) and not p.name.startswith(".")]
        if not files:
            report.empty_classes.append(sub.name)
            continue
        classes.append(sub.name)
        paths += [str(f) for f in files]
        labels += [len(classes) - 1] * len(files)
    data = LabelledImages(classes, paths, np.asarray(labels, dtype=np.int64), [None] * len(paths), str(root), report)
    return _finish(data, check_readable)


def read_csv(path, classes: list[str] | None = None, check_readable: bool = True) -> LabelledImages:
    """A CSV of ``path,label`` or ``path,label,x0,y0,x1,y1`` (a header row is recognised and skipped).

    Relative paths are relative to the CSV's folder.  ``classes`` restricts the labels (others are
    reported as unknown); by default the classes are the labels in order of first appearance.
    """
    path = Path(path)
    report = DatasetReport()
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VipInputError(f"Could not read the CSV {str(path)!r}: {exc}.") from None
    for n, row in enumerate(reader, start=1):
        row = [c.strip() for c in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if n == 1 and row[0].lower() in ("path", "file", "filename", "image") and len(row) >= 2:
            continue
        if len(row) not in (2, 6):
            report.bad_rows.append((n, f"{len(row)} columns; expected path,label or path,label,x0,y0,x1,y1"))
            continue
        box = None
        if len(row) == 6:
            try:
                box = tuple(float(v) for v in row[2:])
            except ValueError:
                report.bad_rows.append((n, f"box {row[2:]} is not four numbers"))
                continue
        rows.append((n, row[0], row[1], box))
    known = list(classes) if classes else list(dict.fromkeys(lab for _, _, lab, _ in rows if lab))
    index = {c: k for k, c in enumerate(known)}
    paths, labels, boxes = [], [], []
    for n, p, lab, box in rows:
        if lab not in index:
            report.unknown_labels.append((n, lab))
            continue
        f = Path(p).expanduser()
        if not f.is_absolute():
            f = path.parent / f
        if not f.is_file():
            report.missing_files.append(str(f))
            continue
        paths.append(str(f))
        labels.append(index[lab])
        boxes.append(box)
    labels_arr = np.asarray(labels, dtype=np.int64)
    present = [c for k, c in enumerate(known) if (labels_arr == k).any()]
    report.empty_classes += [c for c in known if c not in present]
    if len(present) != len(known):  # renumber without the empty classes
        remap = {known.index(c): k for k, c in enumerate(present)}
        labels_arr = np.asarray([remap[v] for v in labels], dtype=np.int64)
    data = LabelledImages(present, paths, labels_arr, boxes, str(path), report)
    return _finish(data, check_readable)


def _finish(data: LabelledImages, check_readable: bool) -> LabelledImages:
    if check_readable and len(data):
        keep = []
        for i in range(len(data)):
            try:
                data.read(i)
            except VipInputError as exc:
                data.report.unreadable.append((data.paths[i], str(exc).split(": ", 1)[-1]))
            else:
                keep.append(i)
        if len(keep) != len(data):
            report = data.report
            data = data.subset(keep)
            present = [k for k in range(len(data.classes)) if (data.labels == k).any()]
            if len(present) != len(data.classes):
                report.empty_classes += [data.classes[k] for k in range(len(data.classes)) if k not in present]
                remap = {old: new for new, old in enumerate(present)}
                data = LabelledImages([data.classes[k] for k in present], data.paths,
                                      np.asarray([remap[int(v)] for v in data.labels], dtype=np.int64),
                                      data.boxes, data.source, report)
    if len(data.classes) < 2:
        problems = "; ".join(data.report.lines())
        raise VipInputError(
            f"{data.source!r} has {len(data.classes)} class(es) with readable images "
            f"({', '.join(data.classes) or 'none'}); prompt learning needs at least 2. Put each class's images in "
            "its own sub-folder (DATA/<class>/*.png) or list them in a CSV of path,label."
            + (f" Problems found: {problems}." if problems else "")
        )
    return data


def load_labelled(path, classes: list[str] | None = None, check_readable: bool = True) -> LabelledImages:
    """A folder of class folders or a ``.csv`` file; see :func:`scan_folder` and :func:`read_csv`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise VipInputError(f"Labelled data {str(p)!r} does not exist; give a folder of class folders or a CSV.")
    if p.is_dir():
        data = scan_folder(p, check_readable)
        if classes:
            wanted = list(classes)
            missing = [c for c in wanted if c not in data.classes]
            if missing:
                raise VipInputError(f"No images for class(es) {missing} in {str(p)!r}; found {data.classes}.")
            keep = [i for i in range(len(data)) if data.classes[data.labels[i]] in wanted]
            sub = data.subset(keep)
            data = LabelledImages(wanted, sub.paths,
                                  np.asarray([wanted.index(data.classes[v]) for v in sub.labels], dtype=np.int64),
                                  sub.boxes, sub.source, data.report)
        return data
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return read_csv(p, classes, check_readable)
    raise VipInputError(f"{str(p)!r} is neither a folder nor a .csv file of path,label rows.")


def split_indices(labels, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, val)`` index arrays: each class contributes ``val_fraction`` of its images
    to validation (at least one when it has two or more images).  Same seed, same split."""
    labels = np.asarray(labels)
    if not 0 <= val_fraction < 1:
        raise VipInputError(f"Validation fraction {val_fraction} must be in [0, 1).")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))
