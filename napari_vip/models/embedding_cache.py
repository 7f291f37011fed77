"""SAM and SAM 2 image embeddings remembered in memory (LRU) and on disk, so an image is embedded once.

Key
---
:func:`embedding_key` hashes everything the embedding depends on: a signature of the model-input image
data (:func:`image_signature`: blake2b of the ``(H, W, 3)`` uint8 bytes and shape), the window/contrast
used to make that input (``(low, high)`` and ``invert``), the model's weights id (the checkpoint's
sha256), its architecture, the MedSAM flag, the input-preparation version and the precision the encoder ran in
(a float32 and a bfloat16 embedding of one image never share an entry).  Changing any of them gives
another key: a stale entry is never looked up.  Each disk entry also stores its key parts and shapes, and
is checked on reading; an entry that does not match (or does not read) is deleted and recomputed.

Where
-----
``$NAPARI_VIP_CACHE/embeddings`` when the environment variable ``NAPARI_VIP_CACHE`` is set, else the user
cache folder ``platformdirs.user_cache_dir("napari-vip")/embeddings`` (``~/.cache/napari-vip/embeddings`` on
Linux, ``~/Library/Caches/napari-vip/embeddings`` on macOS, ``%LOCALAPPDATA%\\napari-vip\\Cache\\embeddings``
on Windows).  Entries of untrained models (random weights, new each load) stay in memory only.  The folder
is kept under ``max_disk_bytes`` (default 2 GiB) by deleting the least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV_VAR = "NAPARI_VIP_CACHE"
DEFAULT_MAX_DISK_BYTES = 2 << 30


def cache_root() -> Path:
    """The napari-vip user cache folder (see module docstring)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("napari-vip", appauthor=False))
    except ImportError:  # pragma: no cover - napari depends on platformdirs
        return Path.home() / ".cache" / "napari-vip"


def image_signature(image_rgb: np.ndarray) -> str:
    """blake2b hex digest of an image's bytes, dtype and shape (a few ms for 1024x1024x3)."""
    arr = np.ascontiguousarray(image_rgb)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def embedding_key(image_sig: str, window, invert: bool, weights_id: str, arch: str, medsam: bool,
                  prepare_version: int = 1, precision: str = "fp32") -> str:
    """The cache key of an embedding (hex).  ``window`` is ``(low, high)`` or ``None`` (unwindowed colour);
    ``precision`` the concrete one the encoder ran in (``fp32|bf16|fp16``)."""
    parts = key_parts(image_sig, window, invert, weights_id, arch, medsam, prepare_version, precision)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]


def key_parts(image_sig, window, invert, weights_id, arch, medsam, prepare_version=1, precision="fp32") -> dict:
    """What a key hashes.  ``precision`` is a part only when it is not ``fp32``, so float32 entries stored before
    precisions existed keep their keys, and an embedding made in another precision never answers for it."""
    parts = {"image": image_sig, "window": None if window is None else [float(window[0]), float(window[1])],
             "invert": bool(invert), "weights": weights_id, "arch": str(arch), "medsam": bool(medsam),
             "prepare": int(prepare_version)}
    if precision != "fp32":
        parts["precision"] = str(precision)
    return parts


@dataclass
class CachedEmbedding:
    """What is stored: ``features`` float32 as the model gives them (SAM ``(1, C, h, w)``; SAM 2 ``(N,)``, its
    three feature maps flattened), the resized input size and the image size."""

    features: np.ndarray
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class EmbeddingCache:
    """Two-level cache: ``get`` looks in memory, then on disk; ``put`` stores in both.

    Parameters
    ----------
    max_memory : int
        Entries kept in memory (least recently used dropped first).
    folder : path, optional
        Disk folder; default ``cache_root() / "embeddings"``.  ``disk=False`` turns the disk level off.
    max_disk_bytes : int
    """

    def __init__(self, max_memory: int = 8, folder=None, disk: bool = True,
                 max_disk_bytes: int = DEFAULT_MAX_DISK_BYTES):
        self.max_memory = max_memory
        self.folder = Path(folder) if folder is not None else cache_root() / "embeddings"
        self.disk = disk
        self.max_disk_bytes = max_disk_bytes
        self._mem: OrderedDict[str, object] = OrderedDict()
        self.stats = {"memory": 0, "disk": 0, "miss": 0}

    # -- memory (holds whatever the model uses, e.g. a SamEmbedding with torch tensors) --------------------------
    def get_memory(self, key: str):
        if key in self._mem:
            self._mem.move_to_end(key)
            return self._mem[key]
        return None

    def put_memory(self, key: str, value) -> None:
        self._mem[key] = value
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_memory:
            self._mem.popitem(last=False)

    # -- disk ----------------------------------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npy", self.folder / f"{key}.json"

    def get_disk(self, key: str, parts: dict) -> CachedEmbedding | None:
        """The stored entry for ``key`` if present and its stored key parts equal ``parts``; else ``None``
        (a mismatched or unreadable entry is removed)."""
        if not self.disk:
            return None
        npy, meta_p = self._paths(key)
        if not (npy.is_file() and meta_p.is_file()):
            return None
        try:
            meta = json.loads(meta_p.read_text())
            feats = np.load(npy, allow_pickle=False)
            ok = (meta.get("parts") == parts and list(feats.shape) == meta.get("shape")
                  and feats.dtype == np.float32)
        except (OSError, ValueError, json.JSONDecodeError):
            ok = False
        if not ok:
            self.remove(key)
            return None
        now = time.time()
        try:
            os.utime(npy, (now, now))
        except OSError:
            pass
        return CachedEmbedding(feats, tuple(meta["input_size"]), tuple(meta["original_size"]))

    def put_disk(self, key: str, parts: dict, entry: CachedEmbedding) -> Path | None:
        """Write an entry atomically (temporary file, then rename); returns the ``.npy`` path."""
        if not self.disk:
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            npy, meta_p = self._paths(key)
            feats = np.ascontiguousarray(entry.features, dtype=np.float32)
            tmp = npy.with_name(f".{key}.{os.getpid()}.tmp.npy")
            np.save(tmp, feats, allow_pickle=False)
            meta = {"parts": parts, "shape": list(feats.shape), "input_size": list(entry.input_size),
                    "original_size": list(entry.original_size), "created": time.time()}
            tmp_meta = meta_p.with_name(f".{key}.{os.getpid()}.tmp.json")
            tmp_meta.write_text(json.dumps(meta))
            os.replace(tmp_meta, meta_p)
            os.replace(tmp, npy)
        except OSError:
            return None  # a read-only or full disk only costs a recomputation later
        self.trim()
        return npy

    def remove(self, key: str) -> None:
        for p in self._paths(key):
            try:
                p.unlink()
            except OSError:
                pass

    def trim(self) -> None:
        """Delete least recently used disk entries until the folder holds at most ``max_disk_bytes``."""
        try:
            files = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
        except OSError:
            return
        for p in files:
            if total <= self.max_disk_bytes:
                break
            total -= p.stat().st_size
            self.remove(p.stem)

    def clear_memory(self) -> None:
        self._mem.clear()
