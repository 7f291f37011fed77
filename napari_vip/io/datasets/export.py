"""Write a user's images and masks as a data set in medvlsm's layout, with the prompt ladder per image.

``DATA_OUT/images/<name>`` (the image file copied byte for byte), ``DATA_OUT/masks/<stem>.png`` (the checked
mask as 0/255 PNG, medvlsm's form), ``DATA_OUT/anns/<split>.json`` (entries in the released files' keys and
order, see :func:`~napari_vip.io.datasets.medvlsm.medvlsm_entry`; prompts p0 ... p9 from
:func:`napari_vip.core.prompt_ladder.prompt_ladder`, plus the sample's own ``prompt`` when it has one).  The
result reads back with :func:`~napari_vip.io.datasets.samples.read_seg_dataset` and with the released data
module.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np

from ...core.errors import VipInputError
from .masks import write_mask_png
from .medvlsm import SPLITS, AnnotationStyle, medvlsm_entry, write_medvlsm_annotations
from .samples import SegSample, load_sample

IMAGE_ENDINGS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def pair_folders(images_dir, masks_dir, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[SegSample]:
    """Samples from an image folder and a mask folder matched by file stem (``a.jpg`` with ``a.png`` or
    ``a_mask.png``), split at random (seeded) into train/val/test by ``fractions``.

    Raises
    ------
    VipInputError
        A missing folder, an image without a mask (named), no pairs.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise VipInputError(f"Folder {str(d)!r} does not exist.")
    masks = {}
    for m in sorted(masks_dir.iterdir()):
        if m.suffix.lower() in IMAGE_ENDINGS + (".npy",):
            stem = m.stem[:-5] if m.stem.endswith("_mask") else m.stem
            masks[stem] = m
    pairs = []
    for im in sorted(images_dir.iterdir()):
        if im.suffix.lower() not in IMAGE_ENDINGS or im.name.startswith("."):
            continue
        if im.stem not in masks:
            raise VipInputError(f"The image {str(im)!r} has no mask in {str(masks_dir)!r} (looked for {im.stem}.* "
                                f"and {im.stem}_mask.*).")
        pairs.append((im, masks[im.stem]))
    if not pairs:
        raise VipInputError(f"No images in {str(images_dir)!r}.")
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise VipInputError(f"Split fractions must be three non-negative numbers (train val test), got {fractions}.")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    f = np.asarray(fractions, dtype=float) / float(sum(fractions))
    bounds = np.round(np.cumsum(f) * len(pairs)).astype(int)
    split_of = {}
    for rank, i in enumerate(order):
        split_of[i] = SPLITS[int(np.searchsorted(bounds, rank, side="right"))] if rank < bounds[-1] else SPLITS[-1]
    return [SegSample(im.stem, im, m, {}, None, split_of[i]) for i, (im, m) in enumerate(pairs)]


def _bbox_xyxy(mask: np.ndarray):
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return (0, 0, 0, 0)
    return (cols.min(), rows.min(), cols.max(), rows.max())


def export_medvlsm(samples: list[SegSample], out_dir, class_name: str, definition=None, library=None,
                   ladder: bool = True, progress=None, indent: int | None = 4) -> dict:
    """Write ``samples`` (their ``split`` decides the file; None = ``train``) in medvlsm's layout.

    Parameters
    ----------
    class_name : str
        The class the masks show (p1 of the ladder).
    definition, library
        Definitions for p7 ... p9 (see :func:`napari_vip.core.prompt_ladder.ladder_definitions`).
    ladder : bool
        Compute the ladder from each mask; with False the samples' own prompts are written as they are.
    progress : callable, optional
        ``progress(done, total, text)``.

    Returns
    -------
    dict
        ``{"out": str, "splits": {split: count}, "files": {split: anns path}, "notes": [...]}``.

    Raises
    ------
    VipInputError
        Any sample's problem (file named), an existing non-empty ``anns/<split>.json``.
    """
    from ...core.prompt_ladder import prompt_ladder

    out = Path(out_dir)
    by_split: dict[str, list[dict]] = {}
    names: set[str] = set()
    notes: list[str] = []
    for s in samples:
        split = s.split or "train"
        if (out / "anns" / f"{split}.json").exists():
            raise VipInputError(f"{str(out / 'anns' / (split + '.json'))!r} exists; export into a new folder.")
    for i, s in enumerate(samples):
        image, mask = load_sample(s, allow_empty=True, notes=notes)
        if ladder:
            prompts = prompt_ladder(image, mask, class_name, definition, library)
            if "prompt" in s.prompts:
                prompts["prompt"] = s.prompts["prompt"]
        else:
            if not s.prompts:
                raise VipInputError(f"{str(s.image_path)!r} has no prompts; export with the ladder.")
            prompts = dict(s.prompts)
        img_name = s.image_path.name
        if img_name in names:
            img_name = f"{i}_{img_name}"
        names.add(img_name)
        mask_name = Path(img_name).stem + ".png"
        (out / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.image_path, out / "images" / img_name)
        write_mask_png(mask, out / "masks" / mask_name)
        split = s.split or "train"
        entries = by_split.setdefault(split, [])
        entries.append(medvlsm_entry(Path(img_name).stem, img_name, mask_name, prompts, _bbox_xyxy(mask),
                                     len(entries)))
        if progress:
            progress(i + 1, len(samples), f"exported {img_name}")
    files = {k: str(write_medvlsm_annotations(out / "anns" / f"{k}.json", v, AnnotationStyle(indent)))
             for k, v in by_split.items()}
    return {"out": str(out), "splits": {k: len(v) for k, v in by_split.items()}, "files": files,
            "class": class_name, "notes": notes}
