"""A loaded VLSM: :class:`VlsmModel` holds the torch module, its preprocessing, tokenizer and provenance.

The module (:attr:`VlsmModel.module`, a ``torch.nn.Module``) has three parts every family shares, so training
can store what a frozen part computes and DDP can wrap the whole:

- ``encode_image(pixel_values (B, 3, S, S)) -> (hidden: list of (B, T, Dv), pooled (B, P))``: the vision
  encoder's hidden states at the decoder's ``extract_layers`` (``hidden_states[i + 1]``, as CLIPSeg and
  medvlsm's BiomedCLIPSeg take them) and the projected pooled image embedding;
- ``text_conditional(input_ids (B, L), attention_mask (B, L)) -> (B, D)``;
- ``decode(hidden, conditional) -> logits (B, 1, S, S)``;
- ``forward(input_ids, attention_mask, pixel_values=None, hidden=None)``: decode(encode or given hidden, text).

torch is imported inside functions only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...core.image import resize_nearest_exact

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Version of the image preparation; part of every stored-activation key.
PREPARE_VERSION = 1


@dataclass
class ImageActivations:
    """What the frozen vision encoder computes for a batch.

    Attributes
    ----------
    hidden : list of torch.Tensor
        One ``(B, T, Dv)`` float tensor per decoder ``extract_layer`` (``T`` = patches + 1 class token).
    pooled : torch.Tensor
        ``(B, P)`` the projected pooled image embedding.
    """

    hidden: list
    pooled: object

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``{"hidden_0": (B, T, Dv) float32, ..., "pooled": (B, P) float32}`` on the CPU."""
        out = {f"hidden_{i}": h.detach().float().cpu().numpy() for i, h in enumerate(self.hidden)}
        out["pooled"] = self.pooled.detach().float().cpu().numpy()
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, device="cpu") -> ImageActivations:
        """Inverse of :meth:`to_arrays` (arrays with or without the batch axis stacked by the caller)."""
        import torch

        n = sum(1 for k in arrays if k.startswith("hidden_"))
        hidden = [torch.as_tensor(np.asarray(arrays[f"hidden_{i}"]), device=device) for i in range(n)]
        return cls(hidden, torch.as_tensor(np.asarray(arrays["pooled"]), device=device))

    def index(self, rows) -> ImageActivations:
        return ImageActivations([h[rows] for h in self.hidden], self.pooled[rows])


@dataclass
class VlsmPrediction:
    """A VLSM's answer for one image and one text.

    Attributes
    ----------
    prob : np.ndarray
        ``(H, W)`` float32 in [0, 1], the sigmoid of the logits resized to the image with nearest-exact.
    mask : np.ndarray
        ``(H, W)`` bool: ``sigmoid(logits) > threshold`` at the model's size, resized with nearest-exact
        (as medvlsm writes its predicted masks).
    logits_model : np.ndarray
        ``(S, S)`` float32 logits at the model's input size.
    """

    prob: np.ndarray
    mask: np.ndarray
    logits_model: np.ndarray


@dataclass
class VlsmModel:
    """A loaded VLSM (see :func:`napari_vip.models.vlsm.load_vlsm`).

    Attributes
    ----------
    spec : VlsmSpec
    module : torch.nn.Module
        The network (encode_image / text_conditional / decode / forward); train it, wrap it in DDP, cast it.
    family : str
        ``clipseg``, ``biomedclipseg`` or ``biomedclipseg-d``.
    method : str
        How its weights were made: ``"released"``, ``"untrained"``, or the fine-tuning method (``"vlsm"``,
        ``"cotexnet"``).
    input_size : int
        ``S``: 352 for CLIPSeg, 224 for BiomedCLIPSeg.
    mean, std : tuple of float
        Per-channel normalisation after scaling to [0, 1].
    tokenizer : callable
        A Hugging Face tokenizer (CLIP BPE for CLIPSeg, PubMedBERT's for BiomedCLIPSeg).
    context_length : int
        Tokens per text (77 CLIPSeg, 256 BiomedCLIPSeg), padded to it as medvlsm does.
    sha256 : str or None
        Of the weights file(s); ``None`` for untrained or hub weights read through a cache.
    weights_id : str
        What stored activations are keyed on (the sha256, or a per-load random id for untrained weights).
    """

    spec: object
    module: object
    family: str
    input_size: int
    mean: tuple
    std: tuple
    tokenizer: object
    context_length: int
    sha256: str | None
    weights_id: str
    method: str = "released"
    device: str = "cpu"
    threshold: float = 0.5
    needs_text: bool = True
    config: dict = field(default_factory=dict)

    @property
    def untrained(self) -> bool:
        return self.spec.untrained

    def preprocess(self, images) -> object:
        """``(B, 3, S, S)`` float32 tensor on :attr:`device` from ``(H, W, 3)`` uint8 images: PIL bilinear resize
        to ``S x S`` (as torchvision's ``Resize`` on a PIL image in medvlsm and transformers' ViT image
        processor do), scaled to [0, 1], normalised with :attr:`mean` / :attr:`std`."""
        import torch
        from PIL import Image

        from ...core.errors import VipInputError

        out = np.empty((len(images), 3, self.input_size, self.input_size), dtype=np.float32)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        for i, img in enumerate(images):
            a = np.asarray(img)
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise VipInputError(f"A VLSM needs (H, W, 3) uint8 RGB images; got {a.shape} {a.dtype}.")
            r = Image.fromarray(a).resize((self.input_size, self.input_size), Image.BILINEAR)
            x = np.asarray(r, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
            out[i] = (x - mean) / std
        return torch.from_numpy(out).to(self.device)

    def tokenize(self, texts) -> dict:
        """``{"input_ids": (B, L) long, "attention_mask": (B, L) long}`` padded to :attr:`context_length`."""
        enc = self.tokenizer(list(texts), max_length=self.context_length, truncation=True, padding="max_length",
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device)}

    def encode_image(self, pixel_values) -> ImageActivations:
        import torch

        with torch.no_grad():
            hidden, pooled = self.module.encode_image(pixel_values)
        return ImageActivations(list(hidden), pooled)

    def text_conditional(self, input_ids, attention_mask):
        """``(B, D)`` conditional embedding of tokenised texts."""
        return self.module.text_conditional(input_ids, attention_mask)

    def decode(self, activations: ImageActivations, conditional):
        """``(B, 1, S, S)`` logits."""
        return self.module.decode(activations.hidden, conditional)

    def forward_logits(self, pixel_values, input_ids, attention_mask):
        """``(B, 1, S, S)`` logits = decode(encode_image, text_conditional)."""
        return self.decode(self.encode_image(pixel_values), self.text_conditional(input_ids, attention_mask))

    def predict(self, image: np.ndarray, text: str) -> VlsmPrediction:
        """Mask for ``text`` on ``image`` (``(H, W, 3)`` uint8), resized back to ``(H, W)`` with nearest-exact."""
        import torch

        was = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                tok = self.tokenize([text])
                logits = self.forward_logits(self.preprocess([image]), tok["input_ids"], tok["attention_mask"])
        finally:
            self.module.train(was)
        lg = logits[0, 0].float().cpu().numpy()
        prob_model = torch.sigmoid(logits[0, 0].double()).cpu().numpy()
        hw = np.asarray(image).shape[:2]
        prob = resize_nearest_exact(prob_model.astype(np.float32), hw)
        mask = resize_nearest_exact(prob_model > self.threshold, hw)
        return VlsmPrediction(prob, mask.astype(bool), lg.astype(np.float32))

    def describe(self) -> str:
        return self.spec.describe()

    def provenance(self) -> dict:
        """Model part of a result's provenance."""
        return {"model": self.spec.to_dict(), "weights_sha256": self.sha256, "untrained": self.untrained,
                "device": str(self.device), "family": self.family, "method": self.method,
                "input_size": self.input_size, "threshold": self.threshold,
                "precision": getattr(self, "precision", "fp32")}

    def preprocessing_key(self) -> str:
        """What decides :meth:`preprocess`'s output (part of a stored-activation key)."""
        return (f"v{PREPARE_VERSION}|pil-bilinear|{self.input_size}|"
                f"{','.join(f'{v:.6f}' for v in self.mean)}|{','.join(f'{v:.6f}' for v in self.std)}")
