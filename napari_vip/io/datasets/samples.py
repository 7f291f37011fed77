"""Segmentation samples (image, mask, prompts) from a medvlsm folder or a CSV, and loading one with its checks.

Two forms of data set (:func:`read_seg_dataset`):

- a folder in medvlsm's layout (:mod:`napari_vip.io.datasets.medvlsm`): ``images/``, ``masks/``,
  ``anns/<split>.json``;
- a CSV with a header row: ``image``, ``mask``, ``prompt``, ``split`` and optionally ``patient_id``, and
  optionally ladder columns ``p0`` ... ``p9`` (a cell starting with ``[`` is a JSON list: one is drawn at
  random).  Relative paths are relative to the CSV's folder.  The ``prompt`` column becomes the prompt type
  ``prompt``; with ladder columns the prompts are ``p0`` ... ``p9`` in that order (``prompt`` after them).

Reading checks what is cheap for every sample (the annotation's keys, that image and mask files exist);
:func:`load_sample` reads one sample's pixels and checks them (mask binary, same size as its image, not
empty unless the sample is marked as an image without the object: ``p1`` ``"no <class>"``, as medvlsm's BKAI
files do).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import VipInputError
from .masks import read_binary_mask, read_rgb
from .medvlsm import available_splits, is_medvlsm_folder, read_medvlsm_annotations

CSV_REQUIRED = ("image", "mask")
LADDER_COLUMNS = tuple(f"p{i}" for i in range(10))


@dataclass
class SegSample:
    """One image with its mask and prompts.

    Attributes
    ----------
    sample_id : str
        Unique within the split (medvlsm: the mask name, as the released code keys its outputs).
    image_path, mask_path : Path
    prompts : dict
        Prompt type -> text or list of texts (``{"p0": "", "p1": "polyp", ...}``).
    patient_id : str or None
        The bootstrap's resampling unit when given.
    split : str or None
    entry : dict or None
        The annotation entry as read (medvlsm layout), for writing it back unchanged.
    """

    sample_id: str
    image_path: Path
    mask_path: Path
    prompts: dict
    patient_id: str | None = None
    split: str | None = None
    entry: dict | None = field(default=None, repr=False)

    @property
    def negative(self) -> bool:
        """Marked as an image without the object (``p1`` starts with ``no ``): its mask may be empty."""
        p1 = self.prompts.get("p1")
        p1 = p1[0] if isinstance(p1, list) and p1 else p1
        return isinstance(p1, str) and p1.lower().startswith("no ")


@dataclass
class SegDataset:
    """The samples of one split and where they came from."""

    samples: list[SegSample]
    source: str
    layout: str  # "medvlsm" or "csv"
    split: str | None

    def __len__(self) -> int:
        return len(self.samples)


def _missing(path: Path, what: str, where: str) -> VipInputError:
    return VipInputError(f"{where}: the {what} {str(path)!r} does not exist; fix the name or remove the entry.")


def read_medvlsm_folder(root, split: str) -> SegDataset:
    root = Path(root)
    ann = root / "anns" / f"{split}.json"
    if not ann.is_file():
        have = available_splits(root)
        raise VipInputError(f"{str(root)!r} has no anns/{split}.json; its splits: {', '.join(have) or 'none'}.")
    entries, _ = read_medvlsm_annotations(ann)
    samples, seen = [], set()
    for i, e in enumerate(entries):
        image = root / "images" / e["img_name"]
        mask = root / "masks" / e["mask_name"]
        where = f"{ann}, entry {i}"
        if not image.is_file():
            raise _missing(image, "image", where)
        if not mask.is_file():
            raise _missing(mask, "mask", where)
        sid = e["mask_name"]
        if sid in seen:
            raise VipInputError(f"{where}: mask {sid!r} appears twice in the split.")
        seen.add(sid)
        samples.append(SegSample(sid, image, mask, dict(e["prompts"]), e.get("patient_id"), split, e))
    return SegDataset(samples, str(root), "medvlsm", split)


def _cell_prompt(text: str, where: str):
    t = text.strip()
    if t.startswith("["):
        try:
            v = json.loads(t)
        except json.JSONDecodeError as exc:
            raise VipInputError(f"{where}: a prompt cell starting with '[' must be a JSON list ({exc.msg}).") from None
        if not (isinstance(v, list) and v and all(isinstance(s, str) for s in v)):
            raise VipInputError(f"{where}: a list prompt must be a non-empty JSON list of strings.")
        return v
    return text


def read_seg_csv(path, split: str | None = None) -> SegDataset:
    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"Data file {str(path)!r} does not exist.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in CSV_REQUIRED if c not in cols]
        ladder = [c for c in LADDER_COLUMNS if c in cols]
        if missing or not ("prompt" in cols or ladder):
            raise VipInputError(f"{str(path)!r} needs the columns image, mask, prompt (or p0 ... p9), split and "
                                f"optionally patient_id; it has {', '.join(cols) or 'none'}.")
        if split is not None and "split" not in cols:
            raise VipInputError(f"{str(path)!r} has no 'split' column, so split {split!r} cannot be chosen; add the "
                                "column (train, val, test).")
        rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    samples, seen = [], set()
    for n, r in enumerate(rows, start=2):
        if split is not None and r.get("split", "").strip() != split:
            continue
        where = f"{path}, line {n}"
        image = (path.parent / r["image"].strip()) if r["image"].strip() else None
        mask = (path.parent / r["mask"].strip()) if r["mask"].strip() else None
        if image is None or mask is None:
            raise VipInputError(f"{where}: empty image or mask cell.")
        if not image.is_file():
            raise _missing(image, "image", where)
        if not mask.is_file():
            raise _missing(mask, "mask", where)
        prompts = {c: _cell_prompt(r[c], where) for c in ladder}
        if "prompt" in cols:
            prompts["prompt"] = _cell_prompt(r["prompt"], where)
        sid = r["mask"].strip()
        if sid in seen:
            raise VipInputError(f"{where}: mask {sid!r} appears twice.")
        seen.add(sid)
        samples.append(SegSample(sid, image, mask, prompts, r.get("patient_id", "").strip() or None,
                                 r.get("split", "").strip() or None))
    return SegDataset(samples, str(path), "csv", split)


def read_seg_dataset(path, split: str | None = "test") -> list[SegSample]:
    """The samples of ``split`` of a medvlsm folder or a CSV (module docstring); see :func:`open_seg_dataset`."""
    return open_seg_dataset(path, split).samples


def open_seg_dataset(path, split: str | None = "test") -> SegDataset:
    """:class:`SegDataset` of ``split`` (``None``: every row of a CSV).

    Raises
    ------
    VipInputError
        Unknown form, missing split, entry without prompts, missing image or mask (file named), no samples.
    """
    p = Path(path)
    if is_medvlsm_folder(p):
        if split is None:
            raise VipInputError(f"{str(p)!r} is a medvlsm folder: choose a split ({', '.join(available_splits(p))}).")
        data = read_medvlsm_folder(p, split)
    elif p.is_file() and p.suffix.lower() == ".csv":
        data = read_seg_csv(p, split)
    elif p.is_dir():
        raise VipInputError(f"{str(p)!r} is not in medvlsm's layout (images/, masks/, anns/<split>.json); give such "
                            "a folder or a CSV (image, mask, prompt, split[, patient_id]), or export one with "
                            "napari-vip seg-data export.")
    else:
        raise VipInputError(f"Data {str(p)!r} does not exist or is not a folder or a .csv file.")
    if not data.samples:
        raise VipInputError(f"{str(p)!r} has no samples in split {split!r}.")
    return data


def load_sample(sample: SegSample, allow_empty: bool | None = None,
                notes: list | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(image (H, W, 3) uint8, mask (H, W) bool)`` of a sample, checked.

    ``allow_empty``: None = allowed for a sample marked as without the object (:attr:`SegSample.negative`).

    Raises
    ------
    VipInputError
        Unreadable files, non-binary mask, mask and image of different sizes (both named), empty mask.
    """
    image = read_rgb(sample.image_path)
    try:
        mask = read_binary_mask(sample.mask_path, shape=image.shape[:2],
                                allow_empty=sample.negative if allow_empty is None else allow_empty, notes=notes)
    except VipInputError as exc:
        raise VipInputError(f"{exc} (image {str(sample.image_path)!r})") from None
    return image, mask
