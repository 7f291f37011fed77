"""Vision-language segmentation models (VLSMs): CLIPSeg, BiomedCLIPSeg, BiomedCLIPSeg-D, and fine-tuning them.

- :mod:`.spec` — :class:`VlsmSpec` (which model, which weights; nothing loaded);
- :mod:`.build` — :func:`load_vlsm`, the safe loader (HF folder, hub id, safetensors, fine-tuned folder,
  untrained config);
- :mod:`.model` — :class:`VlsmModel` (preprocess, tokenize, encode_image, text_conditional, decode, predict);
- :mod:`.nets` — the torch modules; :mod:`.biomed` — BiomedCLIPSeg from open_clip towers;
- :mod:`.finetune` — the training loop with pluggable :class:`~.finetune.FinetuneMethod` s;
- :mod:`.activation_store` — frozen-encoder activations stored on disk.

torch, transformers and open_clip are imported inside functions (``nets`` imports torch when it is imported).
"""

from .model import ImageActivations, VlsmModel, VlsmPrediction
from .spec import FAMILIES, VlsmSpec


def load_vlsm(spec: VlsmSpec, device: str = "cpu", progress=None) -> VlsmModel:
    """The :class:`VlsmModel` ``spec`` names, in eval mode on ``device`` (see :func:`.build.load_vlsm`)."""
    from .build import load_vlsm as _load

    return _load(spec, device, progress)


__all__ = ["VlsmSpec", "VlsmModel", "VlsmPrediction", "ImageActivations", "FAMILIES", "load_vlsm"]
