"""Embedding a dataset evaluation on a Dask distributed cluster.

The samples are cut into shards; each Dask worker process loads the model once (:func:`worker_clip`, cached
per process) and embeds its shards with :func:`napari_vip.worker.evaluate.embed_samples`, exactly as a local
run does.  The driver writes the returned embeddings to its store as shards finish, so an interrupted run
resumes with what came back.  Depends on the evaluation's request types, never the other way round.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from .evaluation_embedding import embed_samples

_CLIPS: dict = {}
_LOCK = threading.Lock()


def worker_clip(spec, device: str):
    """The :class:`~napari_vip.models.clip.ClipModel` of ``spec`` in this process, loaded on first use."""
    from ..models.clip import load_clip
    from ..models.device import resolve_device

    key = (spec, resolve_device(device))
    with _LOCK:
        if key not in _CLIPS:
            _CLIPS[key] = load_clip(spec, key[1])
        return _CLIPS[key]


def embed_shard(spec, device, samples, conditions, recipe, weights, known, batch_size, threads):
    """Embed one shard on a worker.  Returns ``(keys, errors, embedded, new_keys, features (K, D) or None)``."""
    clip = worker_clip(spec, device)
    new_keys, feats = [], []

    def keep(keys, features):
        new_keys.extend(keys)
        feats.append(features)

    keys, errors, embedded = embed_samples(lambda ims: clip.encode_images(ims).cpu().numpy(), samples, conditions,
                                           recipe, weights, set(known), on_batch=keep, batch_size=batch_size,
                                           threads=threads)
    return keys, errors, embedded, new_keys, (np.concatenate(feats) if feats else None)


def connect(scheduler: str):
    """A ``distributed.Client`` of the scheduler at ``scheduler``; VipInputError saying how to start one when it
    cannot be reached."""
    from distributed import Client

    from ..core.errors import VipInputError

    try:
        return Client(scheduler, timeout=30)
    except OSError as exc:
        raise VipInputError(f"Could not reach the Dask scheduler {scheduler!r} ({exc}); start one with "
                            "`dask scheduler` and workers with `dask worker ADDRESS` (docs/evaluation.md).") from None


def shard_bounds(client, n: int, shards: int = 0) -> tuple[int, np.ndarray]:
    """``(workers, bounds)``: ``shards`` (0: four per worker, at most ``n``) contiguous shards of ``range(n)``,
    shard ``k`` being ``bounds[k]:bounds[k + 1]``."""
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    n_shards = max(1, min(n, shards or 4 * n_workers))
    return n_workers, np.linspace(0, n, n_shards + 1).astype(int)


def embed_on_cluster(req, samples, conditions, weights, store, progress):
    """:func:`~napari_vip.worker.evaluate.embed_samples`'s results, computed on the cluster at ``req.scheduler``."""
    from distributed import as_completed

    client = connect(req.scheduler)
    try:
        n_workers, bounds = shard_bounds(client, len(samples), req.shards)
        known = store.keys()
        futures = {client.submit(embed_shard, req.model, req.device, samples[a:b], conditions, req.recipe, weights,
                                 known, req.batch_size, req.threads, pure=False): a
                   for a, b in itertools.pairwise(bounds) if b > a}
        keys: list = [None] * len(samples)
        errors, embedded, done = {}, 0, 0
        try:
            for fut in as_completed(list(futures)):
                start = futures[fut]
                shard_keys, shard_errors, n, new_keys, feats = fut.result()
                if feats is not None:
                    store.add(new_keys, feats)
                keys[start:start + len(shard_keys)] = shard_keys
                errors.update({start + i: r for i, r in shard_errors.items()})
                embedded += n
                done += len(shard_keys)
                progress(done, len(samples), f"embedded {embedded} on {n_workers} Dask worker(s)")
        except BaseException:
            client.cancel(list(futures))
            raise
        return keys, errors, embedded
    finally:
        client.close()
