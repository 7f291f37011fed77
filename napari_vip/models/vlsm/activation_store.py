"""What a frozen VLSM vision encoder computes, stored once per (image file, preprocessing, weights).

As the evaluation's embedding store (:mod:`napari_vip.worker.embedding_store`) does for CLIP features: a key is
the sha1 of the image file's sha256, the model's preprocessing key (input size, mean/std, resize rule), the
weights id (sha256 of the weights file) and the decoder's extract layers.  Each entry is one ``.npz``
(``hidden_0 ... hidden_k`` ``(T, Dv)``, ``pooled`` ``(P,)``, float32), written under a temporary name and
renamed, so an interrupted run leaves no half entry and a rerun (another prompt type, more epochs, a resumed
run) encodes nothing again.  Untrained weights (a random id per load) are kept in memory only.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np


def activation_key(file_sha256: str, preprocessing: str, weights_id: str, layers) -> str:
    """The store key of one image's activations."""
    text = f"{file_sha256}|{preprocessing}|{weights_id}|{','.join(str(int(v)) for v in layers)}"
    return hashlib.sha1(text.encode()).hexdigest()


class ActivationStore:
    """Per-image encoder activations under ``root`` (``None``: memory only).

    Parameters
    ----------
    root : str or Path or None
    max_memory_bytes : int
        Entries read or written are also kept in memory up to this many bytes (the training set of a CPU
        fine-tune usually fits; beyond it entries are read from disk per batch).
    """

    def __init__(self, root=None, max_memory_bytes: int = 4 << 30):
        self.root = Path(root) if root else None
        self.max_memory_bytes = int(max_memory_bytes)
        self._memory: dict[str, dict[str, np.ndarray]] = {}
        self._bytes = 0
        self.reads = self.writes = 0
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def __contains__(self, key: str) -> bool:
        return key in self._memory or (self.root is not None and self._path(key).is_file())

    def _remember(self, key: str, arrays: dict) -> None:
        size = sum(a.nbytes for a in arrays.values())
        if self._bytes + size <= self.max_memory_bytes:
            self._memory[key] = arrays
            self._bytes += size

    def get(self, key: str) -> dict[str, np.ndarray]:
        """``{"hidden_0": (T, Dv), ..., "pooled": (P,)}`` float32 of one image."""
        if key in self._memory:
            return self._memory[key]
        with np.load(self._path(key), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        self.reads += 1
        self._remember(key, arrays)
        return arrays

    def put(self, key: str, arrays: dict) -> None:
        """Keep one image's arrays (no batch axis) and write them to disk when the store has a root."""
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
        self._remember(key, arrays)
        if self.root is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{uuid.uuid4().hex}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        self.writes += 1
