"""The learned-prompts file: learned prompt tensors (ViP, CoOp) and where they came from.

Saved with ``torch.save`` as ``{"format", "version", "meta": JSON text, "tensors": {name: tensor}}`` and read
back with ``torch.load(weights_only=True)``: plain tensors and text, never code.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import VipInputError

FILE_FORMAT = "napari-vip-learned-prompts"
FILE_VERSION = 1


@dataclass
class LearnedPrompts:
    """Learned prompts and where they came from; saved with ``torch.save`` as plain tensors + JSON text.

    Attributes
    ----------
    method : str
    classes : list of str
    descriptors : dict
        ``{class: [descriptor, ...]}`` the prompts were built from (CoOp: ``{class: [class]}``).
    state : dict
        ``{name: torch.Tensor}`` the learned tensors (context vectors; query, W_q, W_k for ViP).
    model : dict
        The CLIP :class:`~napari_vip.models.spec.ModelSpec` as a dict.
    weights_sha256 : str or None
        Of the CLIP weight file (``None`` for an untrained model).
    config : dict
        :class:`~napari_vip.models.training.TrainConfig` fields.
    metrics, history, data : dict / list
        Evaluation, per-epoch training record, and what the prompts were trained on.
    """

    method: str
    classes: list[str]
    descriptors: dict
    state: dict
    model: dict
    weights_sha256: str | None
    config: dict
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    data: dict = field(default_factory=dict)
    embed_dim: int = 0
    text_width: int = 0
    napari_vip_version: str = ""
    created: str = ""

    @property
    def untrained(self) -> bool:
        return bool(self.model.get("untrained"))

    @classmethod
    def from_learner(cls, learner, clip, config, metrics=None, history=None, data=None):
        """From a trained :class:`~napari_vip.models.prompt_learning.PromptLearner` and its
        :class:`~napari_vip.models.training.TrainConfig`."""
        from .. import __version__

        tower = learner.context.tower
        return cls(learner.method, list(learner.classes), {c: list(v) for c, v in learner.descriptors.items()},
                   learner.trainable_state(), clip.spec.to_dict(), clip.sha256, config.to_dict(), metrics or {},
                   history or [], data or {}, tower.embed_dim, tower.width, __version__,
                   time.strftime("%Y-%m-%dT%H:%M:%S"))

    def meta(self) -> dict:
        d = asdict(self)
        d.pop("state")
        return d

    def save(self, path) -> str:
        """Write ``{"format", "version", "meta": JSON text, "tensors": {name: tensor}}`` to ``path``."""
        import torch

        p = Path(path).expanduser()
        if p.parent and not p.parent.exists():
            raise VipInputError(f"Folder {str(p.parent)!r} for the learned prompts does not exist.")
        payload = {"format": FILE_FORMAT, "version": FILE_VERSION,
                   "meta": json.dumps(self.meta(), default=_json_default, allow_nan=True),
                   "tensors": {k: v.detach().cpu().contiguous() for k, v in self.state.items()}}
        torch.save(payload, str(p))
        return str(p)

    @classmethod
    def load(cls, path) -> LearnedPrompts:
        """Read a learned-prompts file with ``torch.load(weights_only=True)``; refuses anything else."""
        import pickle

        import torch

        p = Path(path).expanduser()
        if not p.is_file():
            raise VipInputError(f"Learned prompts file {str(p)!r} does not exist.")
        try:
            payload = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise VipInputError(f"Refused to load {str(p)!r}: it carries code or objects other than tensors; "
                                "it is not a napari-vip learned-prompts file.") from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise VipInputError(f"Could not read learned prompts {str(p)!r} ({str(exc).splitlines()[0][:200]}).") \
                from None
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise VipInputError(f"{str(p)!r} is not a napari-vip learned-prompts file (make one with "
                                "`napari-vip learn` or the VIP learn dock).")
        if payload.get("version") != FILE_VERSION:
            raise VipInputError(f"{str(p)!r} has learned-prompts format version {payload.get('version')}; this "
                                f"napari-vip reads version {FILE_VERSION}.")
        meta = json.loads(payload["meta"])
        fields = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta and k != "state"}
        return cls(state=dict(payload["tensors"]), **fields)

    def check_model(self, clip) -> list[str]:
        """Refuse a CLIP model other than the one the prompts were learned with; returns notes.

        Same architecture and, for real weights, the same weights sha256.  Untrained models of the same
        architecture are accepted with a note (their random weights differ between loads).
        """
        mine = self.model
        theirs = clip.spec.to_dict()
        desc = _describe(mine, self.weights_sha256)
        if mine.get("arch") != theirs.get("arch") or bool(mine.get("untrained")) != bool(theirs.get("untrained")) \
                or (not clip.untrained and self.weights_sha256 != clip.sha256):
            raise VipInputError(
                f"These learned prompts were trained with CLIP {desc}; the chosen model is "
                f"{_describe(theirs, clip.sha256)}. Prompts only work with the model they were learned on: "
                "choose that model, or learn prompts for this one.")
        notes = []
        if clip.untrained:
            notes.append("learned prompts and model are both untrained (random weights): scores are meaningless")
        return notes

    def build(self, clip):
        """A :class:`~napari_vip.models.prompt_learning.PromptLearner` on ``clip`` holding these prompts."""
        import torch

        from .prompt_learning import PromptLearner, TextTower, learner_options

        self.check_model(clip)
        tower = TextTower(clip.model, clip.tokenizer)
        with torch.no_grad():
            learner = PromptLearner(tower, self.classes, self.descriptors if self.method == "vip" else None,
                                    self.method, logit_scale=clip.logit_scale(), **learner_options(self.config))
        learner.load_trainable_state(self.state)
        return learner.eval()

    def class_features(self, clip):
        """``(C, D)`` normalised class embeddings for ``clip`` (replaces zero-shot text embeddings)."""
        import torch

        learner = self.build(clip)
        with torch.no_grad():
            return learner.class_features().detach()

    def summary(self) -> dict:
        return {"method": self.method, "classes": list(self.classes), "model": self.model,
                "weights_sha256": self.weights_sha256,
                "n_descriptors": {c: len(v) for c, v in self.descriptors.items()}, "created": self.created}


def _describe(model: dict, sha: str | None) -> str:
    arch = model.get("arch")
    if model.get("untrained"):
        return f"{arch} (untrained)"
    src = model.get("checkpoint") or model.get("pretrained") or "hub weights"
    return f"{arch} / {src} (sha256 {sha[:12] if sha else 'unknown'}…)"


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
