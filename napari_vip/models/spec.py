"""Which weights: :class:`ModelSpec` names a CLIP model without loading anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..core.errors import VipInputError

#: The CLIP model of the visual-prompting paper; needs the hub (and the ``biomedclip`` extra).
DEFAULT_CLIP_ARCH = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
#: Architecture offered for trying the workflow with random weights.
DEFAULT_UNTRAINED_ARCH = "ViT-B-16"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


@dataclass(frozen=True)
class ModelSpec:
    """A CLIP model: an open_clip architecture or ``hf-hub:`` id, and where its weights come from.

    Exactly one source of weights applies:

    - ``checkpoint``: a local ``.pt/.pth/.bin/.safetensors`` open_clip state dict for ``arch``;
    - ``pretrained``: an open_clip pretrained tag for ``arch`` (downloaded, needs network);
    - ``arch`` starting with ``hf-hub:``: the hub repository's weights (needs network);
    - ``untrained=True``: the real architecture with random weights, flagged in every result.

    ``precision`` (``auto|fp32|bf16|fp16``, :mod:`napari_vip.models.precision`) is the dtype the image tower runs in;
    ``auto`` resolves per device when the model is loaded.
    """

    arch: str = DEFAULT_CLIP_ARCH
    pretrained: str | None = None
    checkpoint: str | None = None
    untrained: bool = False
    precision: str = "auto"

    def __post_init__(self):
        from .precision import check_precision

        check_precision(self.precision)
        if not self.arch:
            raise VipInputError("A model needs an architecture name, e.g. ViT-B-16 or an hf-hub: id.")
        sources = [bool(self.pretrained), bool(self.checkpoint), bool(self.untrained)]
        if sum(sources) > 1:
            raise VipInputError(
                f"Model {self.arch}: choose one source of weights (a pretrained tag, a checkpoint file, or "
                "untrained), not several."
            )
        if not any(sources) and not self.arch.startswith("hf-hub:"):
            raise VipInputError(
                f"Model {self.arch} has no weights: give a pretrained tag (e.g. --pretrained openai), a local "
                "checkpoint file (--checkpoint FILE), or choose --untrained to try the workflow with random weights."
            )
        if self.checkpoint and not self.checkpoint.lower().endswith(CHECKPOINT_SUFFIXES):
            raise VipInputError(
                f"Checkpoint {self.checkpoint!r} must be one of {', '.join(CHECKPOINT_SUFFIXES)} "
                "(an open_clip state dict)."
            )

    def describe(self) -> str:
        """Short human-readable form, e.g. ``ViT-B-16 (untrained)``."""
        if self.untrained:
            return f"{self.arch} (untrained: random weights)"
        if self.checkpoint:
            return f"{self.arch} from {self.checkpoint}"
        if self.pretrained:
            return f"{self.arch} / {self.pretrained}"
        return self.arch

    def to_dict(self) -> dict:
        return asdict(self)
