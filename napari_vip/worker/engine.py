"""The Engine: serves typed requests with cached models.  No Qt, no processes: see ``process.py``.

Capabilities register a handler per request type with :func:`handles`; the modules listed in
:data:`JOB_MODULES` are imported when an Engine is made.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..models.embedding_cache import EmbeddingCache
from .protocol import Cancelled

#: Modules that register request handlers.
JOB_MODULES = [
    "napari_vip.worker.classify",
    "napari_vip.worker.learn",
    "napari_vip.worker.concepts",
    "napari_vip.worker.segment",
    "napari_vip.worker.selftest",
    "napari_vip.worker.attention",
    "napari_vip.worker.evaluate",
    "napari_vip.worker.segmentation_eval.run",
    "napari_vip.worker.volume",
    "napari_vip.worker.region_sentences",
    "napari_vip.worker.learned_volume",
    "napari_vip.worker.vlsm",
    "napari_vip.worker.finetune",
]

_HANDLERS: dict[type, Callable] = {}


def handles(request_type: type):
    """Decorator: ``fn(engine, request, progress) -> result`` serves ``request_type``."""

    def register(fn):
        _HANDLERS[request_type] = fn
        return fn

    return register


def request_types() -> list[type]:
    """Every request type an Engine serves (after its job modules are imported)."""
    for name in JOB_MODULES:
        importlib.import_module(name)
    return list(_HANDLERS)


class ProgressReporter:
    """What a handler calls between steps: ``report(done, total, text, data=None)``.

    Reporting is also where cancellation is noticed: ``should_stop()`` returning True raises
    :class:`Cancelled`, so every job is cancellable at its progress steps.
    """

    def __init__(self, emit: Callable[..., None] | None = None,
                 should_stop: Callable[[], bool] | None = None):
        self._emit = emit or (lambda done, total, text, data=None: None)
        self._should_stop = should_stop or (lambda: False)

    def __call__(self, done: int, total: int, text: str = "", data: dict | None = None) -> None:
        if self._should_stop():
            raise Cancelled()
        if data is None:
            self._emit(done, total, text)
        else:
            self._emit(done, total, text, data)


class Engine:
    """Runs requests; keeps the most recently used models in memory.

    Parameters
    ----------
    max_models : int
        How many loaded models to keep (least recently used are dropped first).

    Attributes
    ----------
    sam_embeddings : EmbeddingCache
        SAM image embeddings in memory and on disk, shared by every SAM request this engine serves.
    """

    def __init__(self, max_models: int = 3):
        for name in JOB_MODULES:
            importlib.import_module(name)
        self.max_models = max_models
        self._models: OrderedDict[Any, Any] = OrderedDict()
        self.sam_embeddings = EmbeddingCache()

    def model(self, key, build: Callable[[], Any]):
        """The cached model for ``key``, built with ``build()`` on first use."""
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        obj = build()
        self._models[key] = obj
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return obj

    def loaded_models(self) -> list[tuple]:
        """The keys of the models in memory, least recently used first (e.g. ``("clip", spec, "cpu")``)."""
        return list(self._models)

    def clip(self, spec, device: str, progress: ProgressReporter | None = None):
        """The cached :class:`~napari_vip.models.clip.ClipModel` for ``spec`` on ``device`` (``auto|cuda|mps|cpu``)."""
        from ..models.clip import load_clip
        from ..models.device import resolve_device
        from ..models.precision import concrete_precision

        dev = resolve_device(device)
        spec = concrete_precision(spec, dev, "clip")
        report = progress or ProgressReporter()
        return self.model(("clip", spec, dev), lambda: load_clip(spec, dev, lambda text: report(0, 0, text)))

    def run(self, request, progress: ProgressReporter | None = None):
        """Serve one request; returns its result type.  Raises VipInputError for bad input."""
        handler = _HANDLERS.get(type(request))
        if handler is None:
            raise TypeError(f"No handler for request type {type(request).__name__}")
        return handler(self, request, progress or ProgressReporter())
