"""Learned-prompts files on the worker: their class embeddings for a CLIP model, cached in the
:class:`~napari_vip.worker.engine.Engine` per file version and model."""

from __future__ import annotations

import os

from ..core.errors import VipInputError


def learned_class_features(engine, clip, prompts_path: str):
    """``(prompts, features)``: the :class:`~napari_vip.models.learned_prompts.LearnedPrompts` in ``prompts_path``
    and its ``(C, D)`` normalised class embeddings for ``clip`` (cached per file version and model).

    Raises VipInputError when the file was learned with another CLIP model.
    """
    from ..models.learned_prompts import LearnedPrompts

    try:
        st = os.stat(prompts_path)
    except OSError:
        raise VipInputError(f"Learned prompts file {prompts_path!r} does not exist.") from None
    key = ("learned-prompts", os.path.abspath(prompts_path), st.st_mtime_ns, st.st_size, clip.spec, clip.device,
           clip.sha256, id(clip))

    def build():
        prompts = LearnedPrompts.load(prompts_path)
        return prompts, prompts.class_features(clip)

    return engine.model(key, build)
