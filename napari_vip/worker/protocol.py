"""Messages between the GUI process and the worker process.  All are plain picklable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):
    """Raised inside a job when it was cancelled or overtaken by a newer request on its channel."""


@dataclass
class Job:
    """A request to run.  Jobs sharing a ``channel`` are interactive: only the newest one matters."""

    id: int
    request: Any
    channel: str | None = None


@dataclass
class Cancel:
    """Ask the worker to stop job ``job_id`` at its next progress step (or skip it if queued)."""

    job_id: int


@dataclass
class Progress:
    """``done`` of ``total`` steps (``total=0``: unknown), with a short description and, optionally, data
    for the GUI (plain JSON-ready values, e.g. ``{"epoch": {...}}`` for a training epoch's record)."""

    job_id: int
    done: int
    total: int
    text: str = ""
    data: dict | None = None


@dataclass
class Done:
    job_id: int
    result: Any


#: Why a job failed: ``input`` (the user can fix it), ``cancelled``, ``stale`` (a newer request won),
#: ``memory`` (out of memory), ``crash`` (the worker died), ``error`` (a bug: traceback attached).
FAILURE_KINDS = ("input", "cancelled", "stale", "memory", "crash", "error")


@dataclass
class Failed:
    job_id: int
    kind: str
    message: str
    details: str = ""


@dataclass
class Provenance:
    """Where a result came from; included in every result and its JSON."""

    package_version: str
    model: dict = field(default_factory=dict)
    weights_sha256: str | None = None
    untrained: bool = False
    device: str = "cpu"
    extra: dict = field(default_factory=dict)
    #: The concrete precision the model ran in (``fp32|bf16|fp16``) and its torch dtype name.
    precision: str = "fp32"
    dtype: str = "float32"
    #: A CLIP model's MLP activation as built (``quick_gelu|gelu``); ``None`` for other models.
    activation: str | None = None

    def to_dict(self) -> dict:
        d = {"napari_vip_version": self.package_version, "model": self.model, "weights_sha256": self.weights_sha256,
             "untrained": self.untrained, "device": self.device, "precision": self.precision, "dtype": self.dtype}
        if self.activation is not None:
            d["activation"] = self.activation
        d.update(self.extra)
        return d
