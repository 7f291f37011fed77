"""A segmentation evaluation's predictions on a Dask distributed cluster.

The pending samples of one model are cut into shards; each Dask worker process loads the model once
(:func:`worker_vlsm`, cached per process) and runs :func:`.sample.evaluate_sample` on its
shard, exactly as a local run does.  Masks travel back packed to bits; the driver writes every record and mask
as its shard finishes, so an interrupted run resumes with what came back.  The workers read the image and mask
files themselves: they must see the same paths (a shared file system, or the same machine).
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

_MODELS: dict = {}
_LOCK = threading.Lock()


def worker_vlsm(spec, device: str):
    """The VLSM of ``spec`` in this worker process, loaded on first use."""
    from . import sample

    key = (spec, device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = sample.load_seg_model(spec, device)
        return _MODELS[key]


def seg_shard(spec, device, samples, todo, seed, resolution):
    """Evaluate one shard on a worker.  Returns ``(provenance, [(record, packed mask, (H, W)), ...])``."""
    from .sample import evaluate_sample

    model = worker_vlsm(spec, device)
    out = []
    for s in samples:
        for rec, mask in evaluate_sample(model, s, todo[s.sample_id], seed, resolution):
            out.append((rec, np.packbits(mask.ravel()), mask.shape))
    prov = model.provenance() if hasattr(model, "provenance") else {}
    return prov, out


def evaluate_on_cluster(req, entry, samples, todo, store, device, progress, check_provenance=None):
    """Run ``samples`` x their pending prompt types of ``entry`` on the cluster at ``req.scheduler``; records go
    to ``store`` as shards finish, after ``check_provenance(provenance)`` has accepted the first shard's model.
    Returns the model's provenance (``None`` when nothing was pending)."""
    from distributed import as_completed

    from ..dask_runner import connect, shard_bounds

    if not samples:
        return None
    client = connect(req.scheduler)
    try:
        n_workers, bounds = shard_bounds(client, len(samples), req.shards)
        futures = [client.submit(seg_shard, entry.spec, device, samples[a:b],
                                 {s.sample_id: todo[s.sample_id] for s in samples[a:b]}, req.seed, req.resolution,
                                 pure=False)
                   for a, b in itertools.pairwise(bounds) if b > a]
        prov, done = None, 0
        try:
            for fut in as_completed(futures):
                shard_prov, rows = fut.result()
                if prov is None and check_provenance is not None:
                    check_provenance(shard_prov)
                prov = shard_prov
                for rec, packed, shape in rows:
                    mask = np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape).astype(bool)
                    store.add(rec, mask if req.save_masks else None)
                done += len({r["sample_id"] for r, _, _ in rows})
                progress(done, f"{entry.label}: {done}/{len(samples)} on {n_workers} Dask worker(s)")
        except BaseException:
            client.cancel(futures)
            raise
        return prov
    finally:
        client.close()
