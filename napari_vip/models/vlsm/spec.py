"""Which vision-language segmentation model (VLSM): :class:`VlsmSpec` names one without loading anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ...core.errors import VipInputError

#: The families medvlsm fine-tunes (CRIS is not offered: see docs/vlsm.md).
FAMILIES = ("clipseg", "biomedclipseg", "biomedclipseg-d")
#: Hub ids of the released weights each family starts from (they need the network).
CLIPSEG_HUB_ID = "CIDAS/clipseg-rd64-refined"
BIOMEDCLIP_HUB_ID = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
DEFAULT_SOURCES = {"clipseg": CLIPSEG_HUB_ID, "biomedclipseg": BIOMEDCLIP_HUB_ID, "biomedclipseg-d": BIOMEDCLIP_HUB_ID}


def source_kind(source: str) -> str:
    """How ``source`` is read: ``"finetuned"`` (a folder written by ``napari-vip finetune``), ``"folder"`` (a
    Hugging Face folder), ``"safetensors"`` (a weights file), or ``"hub"`` (a hub id, needs the network)."""
    p = Path(source).expanduser()
    if p.is_dir():
        return "finetuned" if (p / "provenance.json").is_file() and (p / "config.json").is_file() \
            and _is_ours(p / "config.json") else "folder"
    if str(source).lower().endswith(".safetensors"):
        return "safetensors"
    if p.exists():
        raise VipInputError(f"VLSM source {source!r} is a file but not a .safetensors file; give a Hugging Face "
                            "folder, a .safetensors file, a folder written by `napari-vip finetune`, or a hub id.")
    if "/" in str(source) and not str(source).startswith((".", "/", "~")) and str(source).count("/") <= 2:
        return "hub"
    raise VipInputError(f"VLSM source {source!r} does not exist: give an existing folder or .safetensors file, or "
                        f"a hub id such as {CLIPSEG_HUB_ID} (needs the network).")


def text_free_source(source) -> bool:
    """Whether ``source`` is a fine-tuned folder whose method segments without text (CoTexNet)."""
    import json

    p = Path(str(source)).expanduser() / "config.json"
    try:
        return p.is_file() and json.loads(p.read_text()).get("method") == "cotexnet"
    except (OSError, ValueError, AttributeError):
        return False


def _is_ours(path: Path) -> bool:
    import json

    try:
        return "napari_vip" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class VlsmSpec:
    """A VLSM: its family and where its weights come from.

    Attributes
    ----------
    family : str
        ``"clipseg"`` (transformers ``CLIPSegForImageSegmentation``), ``"biomedclipseg"`` (BiomedCLIP towers,
        frozen, + a randomly initialised CLIPSeg decoder) or ``"biomedclipseg-d"`` (the same with CLIPSeg's
        pretrained decoder).  A fine-tuned folder names its own family (and method, e.g. ``"cotexnet"``).
    source : str or None
        A local Hugging Face folder, a hub id (``CIDAS/clipseg-rd64-refined``; needs the network), a
        ``.safetensors`` file (with ``config`` naming its architecture, or the family's default architecture),
        or a folder written by ``napari-vip finetune``.  ``None`` with ``untrained``.
    untrained : bool
        The real architecture with random weights (seeded), flagged in every result.
    config : str or None
        A JSON architecture config (see :mod:`napari_vip.models.vlsm.build`) for an untrained or small model,
        or for the architecture of a ``.safetensors`` file.
    precision : str
        ``auto|fp32|bf16|fp16``: what the frozen vision tower runs in for inference
        (:func:`napari_vip.models.precision.apply_vlsm_precision`); fine-tuning loads float32.
    """

    family: str = "clipseg"
    source: str | None = None
    untrained: bool = False
    config: str | None = None
    precision: str = "auto"

    def __post_init__(self):
        from ..precision import check_precision

        check_precision(self.precision)
        if self.family not in FAMILIES:
            raise VipInputError(f"Unknown VLSM {self.family!r}; choose one of {', '.join(FAMILIES)}.")
        if self.untrained and self.source:
            raise VipInputError(f"VLSM {self.family}: choose weights ({self.source}) or untrained, not both.")
        if not self.untrained and not self.source:
            raise VipInputError(
                f"VLSM {self.family} has no weights: give --vlsm-checkpoint (a Hugging Face folder, a .safetensors "
                f"file or a folder written by `napari-vip finetune`), the hub id {DEFAULT_SOURCES[self.family]} "
                "(needs the network), or --vlsm-untrained to try the workflow with random weights.")
        if self.config and not Path(self.config).expanduser().is_file():
            raise VipInputError(f"VLSM config {self.config!r} does not exist; give a JSON architecture config.")

    def describe(self) -> str:
        """Short human-readable form, e.g. ``clipseg from CIDAS/clipseg-rd64-refined``."""
        if self.untrained:
            arch = f" {Path(self.config).name}" if self.config else ""
            return f"{self.family}{arch} (untrained: random weights)"
        return f"{self.family} from {self.source}"

    def to_dict(self) -> dict:
        return asdict(self)
