"""Autosave of an annotation label map and its prompt records, keyed by the image, so a crash loses nothing.

Where
-----
``$NAPARI_VIP_AUTOSAVE`` when set, else ``$NAPARI_VIP_CACHE/autosave``, else ``platformdirs.user_cache_dir("napari-vip")/autosave``
(``~/.cache/napari-vip/autosave`` on Linux).  One folder per image key; each save is one ``.npz`` file
(the label map and a JSON string of the records and names) written to a temporary name and renamed, so a
process killed mid-write leaves the previous save intact.  The newest ``keep`` saves are kept.

Usage
-----
``key = image_key(layer.data)``; after every commit or propagation ``Autosave().save(key, labels, records,
names)``; when an image opens, ``Autosave().latest(key)`` returns an :class:`AutosaveEntry` to offer a restore
(``None`` when there is nothing); ``clear(key)`` after the user saved or declined.

A viewer saves with :func:`save_in_background` (one writer thread, saves in order, a copy of the labels so later
commits never tear a save) and remembers each image's key (:func:`cached_image_key`), so a commit on a large
volume does not hold the event loop; :func:`wait_for_saves` waits for the writes sent so far.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_VAR = "NAPARI_VIP_AUTOSAVE"


def autosave_root() -> Path:
    """The autosave folder (see module docstring)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("NAPARI_VIP_CACHE")  # the project's cache folder, when the user moved it
    if cache:
        return Path(cache).expanduser() / "autosave"
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("napari-vip", appauthor=False)) / "autosave"
    except ImportError:  # pragma: no cover - napari depends on platformdirs
        return Path.home() / ".cache" / "napari-vip" / "autosave"


def image_key(data) -> str:
    """Content key of an image: blake2b of its dtype, shape and bytes (hex, 40 characters)."""
    arr = np.ascontiguousarray(np.asarray(data))
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


_KEYS: dict[int, tuple[weakref.ref, str]] = {}
_LOCK = threading.Lock()
_WRITER: ThreadPoolExecutor | None = None
_SPARE: list[np.ndarray] = []  # snapshot buffers the writer has finished with (a fresh 64 MB allocation can
#                                take ten times as long as copying into memory already mapped)
_log = logging.getLogger(__name__)


def cached_image_key(data) -> str:
    """:func:`image_key` of ``data``, computed once per array object (hashing a large volume takes a while)."""
    entry = _KEYS.get(id(data))
    if entry is not None and entry[0]() is data:
        return entry[1]
    key = image_key(data)
    try:
        _KEYS[id(data)] = (weakref.ref(data), key)
    except TypeError:  # an object without weak references: hashed each time
        pass
    return key


def save_in_background(autosave: Autosave, key: str, labels, records=(), names: dict | None = None) -> Future:
    """:meth:`Autosave.save` of a copy of ``labels`` on the writer thread; a failed write is logged."""
    global _WRITER
    labels = np.asarray(labels)
    with _LOCK:
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-vip-autosave")
        spare = next((b for b in _SPARE if b.shape == labels.shape and b.dtype == labels.dtype), None)
        if spare is not None:
            _SPARE.remove(spare)
    snapshot = np.empty_like(labels) if spare is None else spare
    np.copyto(snapshot, labels)
    future = _WRITER.submit(autosave.save, key, snapshot, list(records), dict(names or {}))

    def report(f: Future) -> None:
        with _LOCK:
            _SPARE[:] = [snapshot] + _SPARE[:1]  # keep two buffers at most
        if f.exception() is not None:
            _log.warning("napari-vip: autosave to %s failed: %s", autosave.folder, f.exception())

    future.add_done_callback(report)
    return future


def wait_for_saves(timeout: float | None = 30.0) -> None:
    """Wait until every save sent with :func:`save_in_background` so far is written."""
    with _LOCK:
        writer = _WRITER
    if writer is not None:
        writer.submit(lambda: None).result(timeout)


@dataclass
class AutosaveEntry:
    """One save: ``labels`` (the label map as saved, any shape, integer), ``records`` (prompt records, JSON
    values), ``names`` ``{object id: name}``, ``saved_at`` (seconds since the epoch) and its ``path``."""

    labels: np.ndarray
    records: list
    names: dict
    saved_at: float
    path: Path


class Autosave:
    """Saves per image key under ``folder`` (default :func:`autosave_root`), keeping the newest ``keep``."""

    def __init__(self, folder=None, keep: int = 3):
        self.folder = Path(folder) if folder is not None else autosave_root()
        self.keep = max(1, int(keep))

    def _dir(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not an image key: {key!r}")
        return self.folder / key

    def save(self, key: str, labels, records=(), names: dict | None = None) -> Path:
        """Write a new save atomically; returns its path."""
        d = self._dir(key)
        d.mkdir(parents=True, exist_ok=True)
        now = time.time()
        meta = json.dumps({"records": list(records), "names": {str(k): v for k, v in (names or {}).items()},
                           "saved_at": now}, default=str)
        final = d / f"{time.time_ns():020d}.npz"
        tmp = d / f".{final.stem}.{os.getpid()}.tmp.npz"
        with open(tmp, "wb") as f:
            np.savez(f, labels=np.asarray(labels), meta=np.array(meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        for old in sorted(d.glob("*.npz"))[:-self.keep]:
            old.unlink(missing_ok=True)
        return final

    def latest(self, key: str) -> AutosaveEntry | None:
        """The newest readable save of ``key`` (an unreadable file is skipped), or ``None``."""
        d = self._dir(key)
        for p in sorted(d.glob("*.npz"), reverse=True) if d.is_dir() else []:
            try:
                with np.load(p, allow_pickle=False) as z:
                    labels = z["labels"]
                    meta = json.loads(str(z["meta"]))
            except (OSError, ValueError, KeyError, json.JSONDecodeError):
                continue
            names = {int(k) if k.lstrip("-").isdigit() else k: v for k, v in meta.get("names", {}).items()}
            return AutosaveEntry(labels, meta.get("records", []), names, float(meta.get("saved_at", 0)), p)
        return None

    def clear(self, key: str) -> None:
        """Delete every save of ``key`` (after the user saved the annotations or declined to restore)."""
        d = self._dir(key)
        for p in d.glob("*.npz") if d.is_dir() else []:
            p.unlink(missing_ok=True)
