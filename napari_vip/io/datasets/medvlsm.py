"""medvlsm's annotation files and folder layout (Poudel et al., MIDL 2024; naamiinepal/medvlsm).

Layout of one data set (``DATASETS.MD`` of the released repository)::

    DATA/images/<img_name>          the images
    DATA/masks/<mask_name>          binary masks, 0 background and 255 foreground (names may hold sub-folders,
                                    e.g. CAMUS's ``mask_1/...``)
    DATA/anns/{train,val,test}.json one list per split (some data sets add e.g. ``testB.json``)

Each annotation entry is a JSON object with at least ``img_name``, ``mask_name`` and ``prompts`` (``{"p0": "",
"p1": "polyp", ..., "p7": [...], ...}``; a list value means one is drawn at random, see
:func:`napari_vip.core.prompt_ladder.choose_prompt`).  The released files also carry ``bbox`` (``[x0, y0, x1,
y1]`` pixels), ``cat``, ``segment_id``, ``sentences`` and ``sentences_num``, unused by the released data module;
they are kept as they are.

The released files are ``json.dumps`` output with ``indent`` None (one line), 2 or 4 and no final newline;
:func:`read_medvlsm_annotations` notes which, and :func:`write_medvlsm_annotations` writes entries back in that
form, so a file read and written back is unchanged byte for byte.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import VipInputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class AnnotationStyle:
    """How an annotation file was written: ``json.dumps(entries, indent=indent, ensure_ascii=ensure_ascii)``,
    plus a final newline when ``newline``."""

    indent: int | None = None
    ensure_ascii: bool = True
    newline: bool = False


def detect_style(text: str) -> AnnotationStyle:
    """The :class:`AnnotationStyle` of a JSON list as written by ``json.dumps``."""
    m = re.match(r"\[\n( +)\S", text)
    indent = len(m.group(1)) if m else None
    return AnnotationStyle(indent, ensure_ascii=text.isascii(), newline=text.endswith("\n"))


def read_medvlsm_annotations(path) -> tuple[list[dict], AnnotationStyle]:
    """The entries of an annotation file, unchanged, and its style.

    Raises
    ------
    VipInputError
        Missing or malformed file (line and column named), not a list, an entry without ``img_name``,
        ``mask_name`` or a ``prompts`` object.
    """
    path = Path(path)
    if not path.is_file():
        raise VipInputError(f"Annotation file {str(path)!r} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VipInputError(f"{str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") \
            from None
    if not isinstance(entries, list):
        raise VipInputError(f"{str(path)!r} must hold a JSON list of entries (medvlsm's anns/<split>.json), "
                            f"not a {type(entries).__name__}.")
    for i, e in enumerate(entries):
        check_entry(e, f"{path}, entry {i}")
    return entries, detect_style(text)


def check_entry(e, where: str) -> None:
    """Refuse an entry without ``img_name``, ``mask_name`` or non-empty ``prompts`` of strings / lists of strings."""
    if not isinstance(e, dict):
        raise VipInputError(f"{where}: an entry must be a JSON object, not {type(e).__name__}.")
    for key in ("img_name", "mask_name"):
        if not isinstance(e.get(key), str) or not e[key]:
            raise VipInputError(f"{where}: no {key!r}; every entry names its image and mask file.")
    prompts = e.get("prompts")
    if not isinstance(prompts, dict) or not prompts:
        raise VipInputError(f"{where} ({e['img_name']}): no 'prompts'; give the entry its prompts "
                            "(\"prompts\": {\"p0\": \"\", \"p1\": \"polyp\", ...}), e.g. with napari-vip seg-data "
                            "export --ladder.")
    for k, v in prompts.items():
        ok = isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(s, str) for s in v))
        if not ok:
            raise VipInputError(f"{where} ({e['img_name']}): prompt {k!r} must be a string or a non-empty list of "
                                "strings.")


def dumps_annotations(entries: list[dict], style: AnnotationStyle = AnnotationStyle()) -> str:
    """The text of an annotation file in ``style``."""
    text = json.dumps(entries, indent=style.indent, ensure_ascii=style.ensure_ascii)
    return text + "\n" if style.newline else text


def write_medvlsm_annotations(path, entries: list[dict], style: AnnotationStyle | None = None) -> Path:
    """Write entries as medvlsm's ``anns/<split>.json`` (``style``: the file's own when read back, default
    one line as most released files).  Each entry is checked as :func:`check_entry`."""
    for i, e in enumerate(entries):
        check_entry(e, f"entry {i} for {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps_annotations(entries, style or AnnotationStyle()), encoding="utf-8")
    tmp.replace(path)
    return path


def medvlsm_entry(sample_id: str, img_name: str, mask_name: str, prompts: dict, bbox_xyxy=None,
                  index: int = 0) -> dict:
    """An entry with the released files' keys, in their order (Kvasir's form): ``bbox`` ``[x0, y0, x1, y1]``
    (the mask's first and last foreground column and row; ``[0, 0, 0, 0]`` for an empty mask), ``cat`` 0,
    ``segment_id``, ``img_name``, ``mask_name``, ``sentences`` (one empty sentence), ``prompts``,
    ``sentences_num`` 1."""
    return {"bbox": [int(v) for v in (bbox_xyxy if bbox_xyxy is not None else (0, 0, 0, 0))], "cat": 0,
            "segment_id": sample_id, "img_name": img_name, "mask_name": mask_name,
            "sentences": [{"idx": 0, "sent_id": int(index), "sent": ""}], "prompts": dict(prompts),
            "sentences_num": 1}


def available_splits(root) -> list[str]:
    """The split names of a medvlsm folder (``anns/*.json``)."""
    return sorted(p.stem for p in (Path(root) / "anns").glob("*.json"))


def is_medvlsm_folder(path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "anns").is_dir()
