"""CLIP models: one front door for building them from a :class:`ModelSpec`, and zero-shot scoring.

:func:`load_clip` never turns a missing weight into random weights: only ``spec.untrained`` does that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.errors import VipInputError
from .checkpoint import WeightsProvenance, load_into, load_state_dict, sha256_file
from .spec import ModelSpec

#: How many image embeddings a loaded model remembers.
IMAGE_CACHE_SIZE = 64


@dataclass
class ClipModel(WeightsProvenance):
    """A loaded CLIP model with its preprocessing, tokenizer and a per-prompt text-embedding cache.

    Attributes
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
        In eval mode on ``device``.
    preprocess : callable
        PIL image -> ``(3, S, S)`` float tensor, the model's own transform.
    tokenizer : callable
        list of str -> ``(N, L)`` int tensor.
    sha256 : str or None
        Of the weight file; ``None`` for untrained models.
    precision : str
        What the image tower runs in, ``fp32|bf16|fp16`` (:func:`apply_clip_precision`); the text tower,
        embeddings, logit scale and softmax are float32 whatever it is.
    """

    model: object
    preprocess: object
    tokenizer: object
    spec: ModelSpec
    sha256: str | None
    device: str
    precision: str = "fp32"
    _text_cache: dict = field(default_factory=dict, repr=False)
    _image_cache: dict = field(default_factory=dict, repr=False)

    @property
    def dtype(self):
        """The torch dtype the image tower runs in (of :attr:`precision`)."""
        from .precision import torch_dtype

        return torch_dtype(self.precision)

    def image_batch(self, images: list[np.ndarray]):
        """``(N, 3, S, S)`` tensor of :attr:`dtype` on ``device`` from ``(h, w, 3)`` uint8 images (any sizes)."""
        import torch
        from PIL import Image

        return torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device, self.dtype)

    def encode_images(self, images: list[np.ndarray]):
        """L2-normalised image embeddings, ``(N, D)`` float32 tensor, for ``(h, w, 3)`` uint8 images.

        The embeddings of the last :data:`IMAGE_CACHE_SIZE` distinct images are kept, so re-classifying
        the same image with other classes or prompts only embeds text.
        """
        import hashlib

        import torch

        keys = [hashlib.sha1(np.ascontiguousarray(im).tobytes() + str(im.shape).encode()).hexdigest()
                for im in images]
        todo = {k: im for k, im in zip(keys, images) if k not in self._image_cache}
        if todo:
            with torch.inference_mode():
                feats = self.model.encode_image(self.image_batch(list(todo.values())))
                feats = torch.nn.functional.normalize(feats.float(), dim=-1)
            for k, f in zip(todo, feats):
                self._image_cache[k] = f
                while len(self._image_cache) > IMAGE_CACHE_SIZE:
                    self._image_cache.pop(next(iter(self._image_cache)))
        return torch.stack([self._image_cache[k] for k in keys])

    def encode_texts(self, prompts: list[str]):
        """L2-normalised text embeddings, ``(N, D)`` float32 tensor; each prompt is embedded once per model.

        Causal text towers run only up to the batch's last end token (:mod:`napari_vip.models.text_encoding`).
        """
        import torch

        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if todo:
            from .text_encoding import encode_text

            with torch.inference_mode():
                tokens = self.tokenizer(todo).to(self.device)
                feats = torch.nn.functional.normalize(encode_text(self.model, tokens).float(), dim=-1)
            for p, f in zip(todo, feats):
                self._text_cache[p] = f
        return torch.stack([self._text_cache[p] for p in prompts])

    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    @property
    def activation(self) -> str:
        """``quick_gelu`` or ``gelu``: the MLP activation open_clip built the towers with (see :func:`quick_gelu_weights`)."""
        from open_clip.transformer import QuickGELU

        modules = getattr(self.model, "modules", None)
        return "quick_gelu" if modules and any(isinstance(m, QuickGELU) for m in modules()) else "gelu"

    def provenance(self) -> dict:
        """The model part of a result's provenance, with the :attr:`activation` built."""
        return {**super().provenance(), "activation": self.activation}

    def probabilities(self, image_features, text_features) -> np.ndarray:
        """:func:`class_probabilities` with this model's logit scale."""
        return class_probabilities(image_features, text_features, self.logit_scale())


def class_probabilities(image_features, class_features, logit_scale: float) -> np.ndarray:
    """Softmax over classes of ``logit_scale * img @ cls.T``: ``(N, D) x (C, D) -> (N, C)`` float64.

    Both inputs are torch tensors of L2-normalised rows (computed in float32).
    """
    import torch

    with torch.inference_mode():
        logits = logit_scale * image_features.float() @ class_features.float().T
        return torch.softmax(logits, dim=-1).double().cpu().numpy()


def class_embedding(prompt_features):
    """One class's ``(D,)`` embedding from the ``(K, D)`` text embeddings of its prompts.

    Each row is L2-normalised, the rows are averaged and the mean is L2-normalised again, as open_clip's
    zero-shot classifier builds its class weights.
    """
    import torch

    unit = torch.nn.functional.normalize(prompt_features.float(), dim=-1)
    return torch.nn.functional.normalize(unit.mean(dim=0), dim=-1)


def apply_clip_precision(model, precision: str):
    """Run a CLIP model's image tower in ``precision`` (``fp32|bf16|fp16``); returns ``model``.

    The tower's weights are cast (see :mod:`napari_vip.models.precision` for why not autocast); it casts its
    input on the way in and gives float32 features back.  The text tower, the logit scale and bias stay float32:
    in bfloat16 the text tower alone moved class probabilities by up to 0.015 at a trained CLIP's logit scale
    (100), over the 0.01 parity gate, while the image tower stayed within 0.0072 (docs/precision.md); text
    embeddings are computed once per prompt and cached, so it costs little.
    """
    from .precision import cast_module

    cast_module(model.visual, precision)
    return model


def _hub_error(spec: ModelSpec, exc: Exception) -> VipInputError:
    return VipInputError(
        f"Could not get the weights of {spec.describe()}: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}. "
        "Without network access, download the open_clip checkpoint elsewhere and pass it as a file "
        "(CLI: --model ARCH --checkpoint FILE; dock: Checkpoint), or choose 'untrained' to try the workflow "
        "with random weights."
    )


def resolve_arch(arch: str) -> str:
    """The open_clip model name for ``arch``; a path to an open_clip ``.json`` config is registered first
    (its file stem becomes the name), so custom architectures work offline."""
    from pathlib import Path

    import open_clip

    if arch.lower().endswith(".json"):
        path = Path(arch).expanduser()
        if not path.is_file():
            raise VipInputError(f"Model config {arch!r} does not exist.")
        if path.stem not in open_clip.list_models():
            open_clip.add_model_config(str(path))
        return path.stem
    return arch


def quick_gelu_weights(spec: ModelSpec) -> bool:
    """Whether ``spec``'s weights were trained with QuickGELU, so that the architecture must be built with it.

    True for an open_clip pretrained tag whose configuration says ``quick_gelu`` (every ``openai`` tag: open_clip
    itself builds ``ViT-B-16`` with GELU for ``--pretrained openai`` and only warns in a log), and for a checkpoint
    file beside an ``open_clip_config.json`` whose ``model_cfg`` says so (a hub download).  Otherwise the
    architecture's own activation applies: a ``-quickgelu`` name (``ViT-B-16-quickgelu``) builds QuickGELU, which
    is what a local checkpoint of OpenAI weights needs.
    """
    import json
    from pathlib import Path

    if spec.pretrained and not spec.arch.startswith("hf-hub:"):
        from open_clip import pretrained as op

        return bool(op.get_pretrained_cfg(resolve_arch(spec.arch), spec.pretrained).get("quick_gelu"))
    if spec.checkpoint:
        try:
            cfg = json.loads((Path(spec.checkpoint).expanduser().parent / "open_clip_config.json").read_text())
            return bool(cfg.get("model_cfg", {}).get("quick_gelu"))
        except (OSError, ValueError, AttributeError):
            return False
    return False


def _create(arch: str, device: str, quick_gelu: bool = False):
    """Build the real architecture with random weights (QuickGELU forced with ``quick_gelu``); returns
    (model, preprocess, tokenizer)."""
    import open_clip

    arch = resolve_arch(arch)
    if not arch.startswith("hf-hub:") and arch not in open_clip.list_models():
        raise VipInputError(
            f"Unknown CLIP architecture {arch!r}. Use an open_clip name (e.g. ViT-B-16, ViT-B-32, RN50) or an hf-hub: id."
        )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, device="cpu",
                                                                     force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(arch)
    except VipInputError:
        raise
    except Exception as exc:
        if arch.startswith("hf-hub:"):
            raise VipInputError(
                f"The architecture of {arch} is defined on the hub and could not be fetched "
                f"({str(exc).splitlines()[0][:200]}). Offline, use an open_clip architecture name such as ViT-B-16 "
                "with a local checkpoint, or untrained."
            ) from None
        raise
    return model.to(device).eval(), preprocess, tokenizer


def load_clip(spec: ModelSpec, device: str = "cpu", progress=None) -> ClipModel:
    """Build the model ``spec`` names, with its weights, on ``device``.

    Parameters
    ----------
    spec : ModelSpec
    device : str
        A resolved torch device (see :func:`napari_vip.models.device.resolve_device`).
    progress : callable, optional
        ``progress(text)`` for slow steps.

    Raises
    ------
    VipInputError
        Weights missing, not downloadable, unsafe or of another architecture.
    """
    from .precision import resolve_precision

    say = progress or (lambda text: None)
    precision = resolve_precision(spec.precision, device, "clip")
    if spec.arch.startswith("hf-hub:"):
        _check_hub_extra(spec)
    if spec.untrained:
        say(f"building {spec.arch} with random weights")
        model, preprocess, tokenizer = _create(spec.arch, device)
        return ClipModel(apply_clip_precision(model, precision), preprocess, tokenizer, spec, None, device, precision)
    if spec.checkpoint:
        path = spec.checkpoint
    elif spec.arch.startswith("hf-hub:"):
        path = _fetch_hub_weights(spec)
    else:
        path = _fetch_pretrained(spec)
    say(f"reading weights {path}")
    state = load_state_dict(path, what=spec.describe())
    digest = sha256_file(path)
    quick_gelu = quick_gelu_weights(spec)
    say(f"building {spec.arch}" + (" with QuickGELU, the activation its weights were trained with" if quick_gelu else ""))
    model, preprocess, tokenizer = _create(spec.arch, "cpu", quick_gelu)
    load_into(model, state, f"CLIP architecture {spec.arch}", path)
    return ClipModel(apply_clip_precision(model.to(device).eval(), precision), preprocess, tokenizer, spec, digest,
                     device, precision)


def _check_hub_extra(spec: ModelSpec) -> None:
    """Hub models such as BiomedCLIP have a Hugging Face text tower: refuse early, saying what to install."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise VipInputError(
            f"{spec.describe()} needs the 'transformers' package for its text tower: "
            "pip install 'napari-vip[biomedclip]' (or pip install transformers)."
        )


def _fetch_pretrained(spec: ModelSpec) -> str:
    import open_clip
    from open_clip import pretrained as op

    cfg = op.get_pretrained_cfg(spec.arch, spec.pretrained)
    if not cfg:
        tags = [t for a, t in open_clip.list_pretrained() if a == spec.arch]
        raise VipInputError(
            f"open_clip has no pretrained tag {spec.pretrained!r} for {spec.arch}; known tags: "
            f"{', '.join(tags) or 'none'}."
        )
    try:
        path = op.download_pretrained(cfg)
    except Exception as exc:
        raise _hub_error(spec, exc) from None
    if not path:
        raise _hub_error(spec, RuntimeError("no download location known"))
    return path


def _fetch_hub_weights(spec: ModelSpec) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - open_clip depends on it
        raise _hub_error(spec, exc) from None
    repo = spec.arch[len("hf-hub:"):]
    last: Exception | None = None
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        try:
            return hf_hub_download(repo, name)
        except Exception as exc:  # network errors, missing file, offline mode
            last = exc
    raise _hub_error(spec, last or RuntimeError("no weights file"))
