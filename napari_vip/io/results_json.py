"""Export markers, prompts and predictions to JSON, stamped with provenance.

The caller builds a plain dict (what to save is the caller's business: markers, prompts, class
probabilities, model spec...). :func:`export_results_json` makes it JSON-safe (numpy arrays and
scalars, tuples, paths, dataclasses, NaN → ``null``) and adds a ``"napari_vip"`` block with the
package version and the export time, so a saved result says what made it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError

#: Bumped when the layout of the ``"napari_vip"`` block changes.
FORMAT_VERSION = 1


def to_jsonable(obj):
    """Convert ``obj`` recursively into JSON types; non-finite floats become ``None``.

    Raises
    ------
    VipInputError
        For objects with no JSON form (the message names the type and where it is).
    """
    return _convert(obj, "$")


def _convert(obj, where: str):
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return _convert(obj.tolist(), where)
    if isinstance(obj, (os.PathLike,)):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _convert(dataclasses.asdict(obj), where)
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int, float, bool, np.integer)):
                raise VipInputError(f"JSON keys must be text; {where} has a key of type {type(key).__name__}.")
            out[str(key)] = _convert(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        return [_convert(v, f"{where}[{i}]") for i, v in enumerate(items)]
    raise VipInputError(f"Cannot save {where} to JSON: a {type(obj).__name__} has no JSON form. "
                        "Convert it to numbers, text, lists or dicts first.")


def provenance_block(now: _dt.datetime | None = None) -> dict:
    """``{"version", "exported_at" (ISO 8601, UTC), "format_version", "python"}``."""
    from .. import __version__

    now = now or _dt.datetime.now(_dt.timezone.utc)
    return {"version": __version__, "exported_at": now.isoformat(timespec="seconds"),
            "format_version": FORMAT_VERSION, "python": platform.python_version()}


def export_results_json(path, results: dict, indent: int = 2) -> Path:
    """Write ``results`` plus napari-vip provenance to ``path`` as UTF-8 JSON.

    Parameters
    ----------
    path : str or Path
        Output file; ``.json`` is appended if missing; parent folders are created.
    results : dict
        Anything made of dicts, lists, numbers, text, numpy arrays/scalars and dataclasses,
        e.g. ``{"markers": [...], "prompts": [...], "predictions": {...}, "model": {...}}``.
        It must not already have a ``"napari_vip"`` key.
    indent : int

    Returns
    -------
    Path
        The written file. Its content is ``{"napari_vip": provenance_block(), **results}``.
    """
    if not isinstance(results, dict):
        raise VipInputError(f"Results to export must be a dict, not {type(results).__name__}.")
    if "napari_vip" in results:
        raise VipInputError("The results already have a 'napari_vip' key; it is reserved for provenance.")
    doc = {"napari_vip": provenance_block(), **to_jsonable(results)}
    p = Path(path)
    if p.suffix.lower() != ".json":
        p = p.with_name(p.name + ".json")
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    p.write_text(text + "\n", encoding="utf-8")
    return p


def load_results_json(path) -> dict:
    """Read a file written by :func:`export_results_json`; checks the provenance block is there."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VipInputError(f"{p} is not a readable JSON file ({err}).") from err
    if not isinstance(doc, dict) or "napari_vip" not in doc:
        raise VipInputError(f"{p} was not written by napari-vip (no 'napari_vip' provenance block).")
    return doc
