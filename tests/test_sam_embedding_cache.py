"""Embedding cache: memory and disk hits, misses on changed data, window or weights; bad entries never used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_vip.models.embedding_cache import ENV_VAR, EmbeddingCache, cache_root, embedding_key, image_signature
from napari_vip.models.sam import SamSpec
from napari_vip.worker.engine import Engine
from napari_vip.worker.segment import SegmentEmbedRequest, SegmentRequest


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "vipcache"
    monkeypatch.setenv(ENV_VAR, str(folder))
    return folder / "embeddings"


@pytest.fixture
def image():
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 20:45] = 200
    return img


def embed(engine, image, spec, window=(0.0, 255.0), invert=False):
    return engine.run(SegmentEmbedRequest(image, spec, window=window, invert=invert))


def test_cache_folder_follows_environment(cache_dir):
    assert cache_root() == cache_dir.parent
    assert EmbeddingCache().folder == cache_dir


def test_memory_then_disk_hit_and_same_masks(cache_dir, tiny_sam_checkpoint, image):
    arch, path = tiny_sam_checkpoint
    spec = SamSpec(arch, checkpoint=path)
    engine = Engine()
    first = embed(engine, image, spec)
    assert first.source == "computed"
    assert embed(engine, image, spec).source == "memory"
    assert len(list(cache_dir.glob("*.npy"))) == 1
    box = [(15.0, 5.0, 50.0, 35.0)]
    computed = engine.run(SegmentRequest(image, spec, box, window=(0.0, 255.0)))
    fresh = Engine()  # a new worker: nothing in memory, the disk entry is used
    again = embed(fresh, image, spec)
    assert again.source == "disk" and again.key == first.key
    from_disk = fresh.run(SegmentRequest(image, spec, box, window=(0.0, 255.0)))
    assert from_disk.embedding_source == "memory"
    np.testing.assert_array_equal(from_disk.masks, computed.masks)


def test_miss_on_changed_data_window_or_weights(cache_dir, tiny_sam_checkpoint, tmp_path, image):
    from napari_vip.models.sam import build_sam

    arch, path = tiny_sam_checkpoint
    spec = SamSpec(arch, checkpoint=path)
    engine = Engine()
    base = embed(engine, image, spec)
    changed = image.copy()
    changed[0, 0, 0] ^= 1  # one pixel differs
    r = embed(engine, changed, spec)
    assert r.source == "computed" and r.key != base.key
    r = embed(engine, image, spec, window=(0.0, 200.0))  # same bytes, other window: another key
    assert r.source == "computed" and r.key != base.key
    r = embed(engine, image, spec, invert=True)
    assert r.source == "computed" and r.key != base.key
    torch.manual_seed(7)
    other = tmp_path / "other.pth"
    torch.save(build_sam(arch).state_dict(), other)
    r = embed(engine, image, SamSpec(arch, checkpoint=str(other)))
    assert r.source == "computed" and r.key != base.key
    r = embed(engine, image, SamSpec(arch, checkpoint=path, medsam=True))
    assert r.source == "computed" and r.key != base.key
    assert embed(engine, image, spec).source == "memory"


def test_untrained_embeddings_stay_in_memory(cache_dir, tiny_sam_arch, image):
    engine = Engine()
    spec = SamSpec(tiny_sam_arch, untrained=True)
    assert embed(engine, image, spec).source == "computed"
    assert embed(engine, image, spec).source == "memory"
    assert not list(cache_dir.glob("*.npy")) if cache_dir.exists() else True
    # another load of untrained weights is another model: its embedding is not reused
    assert embed(Engine(), image, spec).source == "computed"


def test_mismatched_or_corrupt_disk_entry_is_never_used(cache_dir, tiny_sam_checkpoint, image):
    arch, path = tiny_sam_checkpoint
    spec = SamSpec(arch, checkpoint=path)
    key = embed(Engine(), image, spec).key
    meta_path = cache_dir / f"{key}.json"
    meta = json.loads(meta_path.read_text())
    meta["parts"]["weights"] = "someone-else"  # entry claims other weights
    meta_path.write_text(json.dumps(meta))
    assert embed(Engine(), image, spec).source == "computed"
    (cache_dir / f"{key}.npy").write_bytes(b"not a numpy file")
    assert embed(Engine(), image, spec).source == "computed"
    assert embed(Engine(), image, spec).source == "disk"


def test_key_parts_and_disk_trim(tmp_path):
    sig = image_signature(np.zeros((4, 4, 3), np.uint8))
    assert sig != image_signature(np.zeros((4, 4, 3), np.uint16))  # dtype is part of the signature
    assert sig != image_signature(np.zeros((2, 8, 3), np.uint8))  # and the shape
    k = embedding_key(sig, (0, 1), False, "w", "vit_b", False)
    assert k != embedding_key(sig, None, False, "w", "vit_b", False)
    from napari_vip.models.embedding_cache import CachedEmbedding, key_parts

    cache = EmbeddingCache(folder=tmp_path, max_disk_bytes=10_000)
    for i in range(4):
        parts = key_parts(f"img{i}", None, False, "w", "vit_b", False)
        cache.put_disk(f"k{i}", parts, CachedEmbedding(np.zeros((1, 4, 16, 16), np.float32), (16, 16), (16, 16)))
    assert 1 <= len(list(tmp_path.glob("*.npy"))) <= 2  # 4 KiB each: the oldest went
    assert cache.get_disk("k3", key_parts("img3", None, False, "w", "vit_b", False)) is not None
