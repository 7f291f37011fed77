"""Render and embed a data set's (sample, condition) images once: rendering in a thread pool ahead of the model.

Shared by the local evaluation run (:mod:`napari_vip.worker.evaluate`) and the Dask runner
(:mod:`napari_vip.worker.dask_runner`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..core.errors import VipInputError
from ..core.paper_render import released_crop_box
from ..core.recipes import render
from .embedding_store import embedding_key

#: Suffix of the render key of a crop made as the released VinDr-CXR / NIH14 loaders make it.
RELEASED_CROP = "/released-crop"


def _render_sample(sample, representatives: dict, recipe: str, weights: str, known, check_box: bool,
                   on_render=None):
    """``(keys, images)`` for one sample: its embedding key per render key, and the renders not in ``known``.

    ``on_render(render_key, image)``, when given, is called for every render of the sample (cached or not).
    Raises VipInputError for an unreadable file or a box outside the image.
    """
    from ..io.eval_data import file_sha256
    from ..io.open_image import plane_from_file, stored_model_rgb

    try:
        digest = file_sha256(sample.path)
    except OSError as exc:
        raise VipInputError(f"cannot read the file ({exc.strerror or exc})") from None
    released = getattr(sample, "released_crop", False)

    def released_crop(rk: str) -> bool:
        return released and representatives[rk].style == "crop"

    keys = {rk: embedding_key(digest, recipe, rk + (RELEASED_CROP if released_crop(rk) else ""),
                              sample.box_xyxy if rk != "none" else None, weights)
            for rk in representatives}
    missing = [rk for rk, k in keys.items() if k not in known]
    todo = list(representatives) if on_render is not None else missing
    if not todo and not check_box:
        return keys, {}
    stored = plane_from_file(sample.path)
    h, w = stored.data.shape[:2]
    box = sample.box_xyxy
    if check_box and box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h):
        raise VipInputError(f"box {tuple(box)} is outside the image ({w}x{h} pixels)")
    images = {}
    base = stored_model_rgb(stored, recipe).rgb if todo else None
    for rk in todo:
        marker = None
        if rk != "none":
            marker = representatives[rk].marker(released_crop_box(box, (h, w)) if released_crop(rk) else box)
        image = render(base, marker, recipe)
        if rk in missing:
            images[keys[rk]] = image
        if on_render is not None:
            on_render(rk, image)
    return keys, images


def embed_samples(encode, samples, conditions, recipe: str, weights: str, known, *, on_batch=None,
                  batch_size: int = 32, threads: int = 4, progress=None, on_render=None):
    """Render and embed every sample's conditions not in ``known``, rendering ahead of the model.

    Parameters
    ----------
    encode : callable or None
        list of ``(h, w, 3)`` uint8 -> ``(K, D)`` float32 L2-normalised embeddings; ``None`` renders only
        (for ``on_render``).
    on_render : callable, optional
        ``on_render(sample_index, render_key, image)`` for every render of every sample, cached or not
        (called from the rendering threads).
    known : set of str
        Keys already embedded; updated as batches finish.
    on_batch : callable, optional
        ``on_batch(keys, features)`` after each model call.
    progress : callable, optional
        ``progress(done, total, text)`` per sample (raising :class:`~napari_vip.worker.protocol.Cancelled`
        stops the run after the batches already embedded).

    Returns
    -------
    keys : list
        Per sample ``{render_key: embedding key}``, or ``None`` when it was skipped.
    errors : dict
        Sample index -> reason.
    embedded : int
        Renders sent to the model.
    """
    representatives = {c.render_key(): c for c in conditions}
    check_box = any(c.needs_box for c in conditions)
    known = known if known is not None else set()
    keys: list = [None] * len(samples)
    errors: dict[int, str] = {}
    pending_keys, pending_images = [], []
    embedded = 0

    def flush():
        nonlocal embedded
        if pending_keys and encode is None:
            pending_keys.clear()
            pending_images.clear()
        elif pending_keys:
            feats = np.asarray(encode(pending_images), dtype=np.float32)
            embedded += len(pending_keys)
            known.update(pending_keys)
            if on_batch is not None:
                on_batch(list(pending_keys), feats)
            pending_keys.clear()
            pending_images.clear()

    with ThreadPoolExecutor(max(1, threads)) as pool:
        window = max(2 * threads, batch_size)
        queue: deque = deque()
        todo = iter(range(len(samples)))

        def submit():
            i = next(todo, None)
            if i is not None:
                hook = None if on_render is None else (lambda rk, im, i=i: on_render(i, rk, im))
                queue.append((i, pool.submit(_render_sample, samples[i], representatives, recipe, weights,
                                             frozenset(known), check_box, hook)))

        for _ in range(window):
            submit()
        done = 0
        while queue:
            i, fut = queue.popleft()
            submit()
            try:
                keys[i], images = fut.result()
            except (VipInputError, OSError, ValueError) as exc:
                errors[i] = str(exc)
                images = {}
            for k, im in images.items():
                if k not in known and k not in pending_keys:
                    pending_keys.append(k)
                    pending_images.append(im)
            if len(pending_keys) >= batch_size:
                flush()
            done += 1
            if progress is not None:
                progress(done, len(samples), f"embedded {embedded}, sample {done}/{len(samples)}")
        flush()
    return keys, errors, embedded
