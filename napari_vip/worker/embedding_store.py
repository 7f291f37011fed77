"""An on-disk store of image embeddings for dataset evaluation, keyed on what decides them.

A key is the sha1 of the image file's sha256, the rendering recipe, the condition's rendering
(:meth:`napari_vip.core.eval_conditions.Condition.render_key`), the box and the weights' sha256, so a rerun with
new prompts, templates or metrics embeds nothing and an interrupted run resumes where it stopped.  Each
:meth:`EmbeddingStore.add` writes one ``.npz`` shard (``keys`` ``(K,)`` str, ``features`` ``(K, D)`` float32)
under a temporary name and renames it, so a run killed mid-write leaves no half shard.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np


def embedding_key(file_sha256: str, recipe: str, render_key: str, box_xyxy, weights: str) -> str:
    box = "" if box_xyxy is None else ",".join(f"{float(v):.4f}" for v in box_xyxy)
    return hashlib.sha1(f"{file_sha256}|{recipe}|{render_key}|{box}|{weights}".encode()).hexdigest()


class EmbeddingStore:
    """Embeddings of one model's weights under ``root`` (``None``: kept in memory only).

    Parameters
    ----------
    root : str or Path or None
    """

    def __init__(self, root=None):
        self.root = Path(root) if root else None
        self._features: dict[str, np.ndarray] = {}
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            for shard in sorted(self.root.glob("*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as z:
                        self._features.update(zip(z["keys"].tolist(), z["features"]))
                except (OSError, ValueError, KeyError):
                    continue  # an unreadable shard is embedded again

    def __contains__(self, key: str) -> bool:
        return key in self._features

    def __len__(self) -> int:
        return len(self._features)

    def keys(self) -> set[str]:
        return set(self._features)

    def get(self, key: str) -> np.ndarray:
        """``(D,)`` float32 L2-normalised embedding."""
        return self._features[key]

    def add(self, keys: list[str], features: np.ndarray) -> None:
        """Remember ``features`` ``(K, D)`` under ``keys`` and write them as one shard."""
        features = np.asarray(features, dtype=np.float32)
        self._features.update(zip(keys, features))
        if self.root is None or not keys:
            return
        name = uuid.uuid4().hex
        tmp = self.root / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.asarray(keys), features=features)
        os.replace(tmp, self.root / f"{name}.npz")
