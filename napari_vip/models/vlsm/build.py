"""Building and loading VLSMs safely: :func:`load_vlsm` is the one front door.

Sources (see :class:`~napari_vip.models.vlsm.spec.VlsmSpec`):

- **Hugging Face folder** (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, tokenizer and
  ``preprocessor_config.json``): the architecture is built from ``config.json`` and the weights are read with
  safetensors or ``torch.load(weights_only=True)`` and loaded strictly: a file of another architecture is
  refused naming the mismatch (``from_pretrained`` would fill missing weights with random ones).
- **hub id** (``CIDAS/clipseg-rd64-refined``): downloaded with ``huggingface_hub.snapshot_download`` into the
  usual cache, then read as a folder.  Offline and not cached: a :class:`VipInputError` saying how to supply a
  folder; never random weights.
- **.safetensors file**: a CLIPSeg state dict (``clip.*``/``decoder.*``, or ``clipseg.*``) for the architecture
  of ``spec.config`` (default: ``CIDAS/clipseg-rd64-refined``'s).
- **fine-tuned folder** (written by ``napari-vip finetune``): ``config.json`` holds the family, the method,
  the architecture and the preprocessing; the tokenizer travels in ``tokenizer/``.
- **untrained**: the architecture of ``spec.config`` (or the released one) with weights seeded 0.

Architecture config JSON (``spec.config``)::

    {"family": "clipseg", "input_size": 352, "context_length": 77, "clipseg": {<CLIPSegConfig kwargs>}}
    {"family": "biomedclipseg", "input_size": 224, "context_length": 256,
     "open_clip": {"embed_dim": 512, "vision_cfg": {...}, "text_cfg": {"hf_model_name": "<folder>", ...}},
     "clipseg": {<CLIPSegConfig kwargs of the decoder>}}

A plain transformers ``CLIPSegConfig`` JSON is read too.  Relative paths inside are relative to the JSON file.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from ...core.errors import VipInputError
from ..checkpoint import load_into, load_state_dict, sha256_file
from .model import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, VlsmModel
from .sources import CLIPSEG_REFINED, METHOD_LOADERS, folder_clipseg_arch, hub_folder, preprocessing, weights_file
from .spec import BIOMEDCLIP_HUB_ID, CLIPSEG_HUB_ID, VlsmSpec, source_kind

_TOKENIZER_DIR: list[Path] = []


def _say(progress, text):
    if progress:
        progress(text)


def read_arch_config(path) -> dict:
    """The architecture JSON at ``path`` as a dict (see the module docstring); paths made absolute."""
    p = Path(path).expanduser()
    try:
        cfg = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise VipInputError(f"VLSM config {str(p)!r} is not readable JSON ({exc}).") from None
    if "clipseg" not in cfg and "vision_config" in cfg:  # a plain CLIPSegConfig
        cfg = {"family": "clipseg", "clipseg": cfg}
    if "clipseg" not in cfg:
        raise VipInputError(f"VLSM config {str(p)!r} has no 'clipseg' architecture block (see docs/vlsm.md).")
    text = cfg.get("open_clip", {}).get("text_cfg", {}) if isinstance(cfg.get("open_clip"), dict) else {}
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text.get(key) and not Path(text[key]).is_absolute() and (p.parent / text[key]).exists():
            text[key] = str((p.parent / text[key]).resolve())
    return cfg


def clip_tokenizer_dir() -> Path:
    """A folder with CLIP's tokenizer files, written once per process from open_clip's vocabulary."""
    from .clip_tokenizer import write_clip_tokenizer

    if not _TOKENIZER_DIR:
        _TOKENIZER_DIR.append(write_clip_tokenizer(Path(tempfile.mkdtemp(prefix="napari_vip_clip_tok_"))))
    return _TOKENIZER_DIR[0]


def _clip_tokenizer(folder: Path | None):
    from transformers import AutoTokenizer, CLIPTokenizer

    if folder is not None and ((folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file()):
        return AutoTokenizer.from_pretrained(str(folder))
    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir()))


def _drop_legacy_buffers(state: dict, module) -> dict:
    """Drop ``position_ids`` buffers older transformers saved (they are not weights)."""
    own = module.state_dict()
    return {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}


def _clipseg_config(arch: dict):
    from transformers import CLIPSegConfig

    return CLIPSegConfig(**arch)


def _build_clipseg(arch: dict):
    from transformers import CLIPSegForImageSegmentation

    from .nets import ClipSegNet

    return ClipSegNet(CLIPSegForImageSegmentation(_clipseg_config(arch)))


def _seeded(build):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def _load_clipseg_weights(net, path: Path, spec: VlsmSpec) -> str:
    state = load_state_dict(path, what=spec.describe())
    if not any(k.startswith("clipseg.") for k in state):
        state = {f"clipseg.{k}": v for k, v in state.items()}
    if not any(k.startswith("clipseg.decoder.") for k in state):
        raise VipInputError(f"{str(path)!r} is not a CLIPSeg checkpoint (no decoder weights); choose a CLIPSeg file "
                            "or the matching --vlsm family.")
    load_into(net, _drop_legacy_buffers(state, net), "CLIPSeg (the config's architecture)", path)
    return sha256_file(path)


def _clipseg_model(spec, folder: Path | None, arch: dict, weights: Path | None, device, method="released",
                   size=352, mean=IMAGENET_MEAN, std=IMAGENET_STD, context=77, tok_folder=None, sha=None,
                   extra_config=None) -> VlsmModel:
    if weights is None:
        net = _seeded(lambda: _build_clipseg(arch))
        sha, wid = None, f"untrained-{uuid.uuid4().hex}"
    else:
        net = _build_clipseg(arch)
        sha = _load_clipseg_weights(net, weights, spec)
        wid = sha
    size, mean, std = preprocessing(folder, size, mean, std)
    net = net.to(device).eval()
    cfg = {"clipseg": arch, **(extra_config or {})}
    return VlsmModel(spec, net, "clipseg", size, mean, std, _clip_tokenizer(tok_folder or folder), context, sha, wid,
                     method="untrained" if spec.untrained else method, device=device, config=cfg)


def load_vlsm(spec: VlsmSpec, device: str = "cpu", progress=None) -> VlsmModel:
    """The model ``spec`` names, in eval mode on ``device`` (``cpu``, ``cuda``, ``mps``).

    ``progress(text)`` is told each step.  Raises :class:`VipInputError` for a missing/unreachable source, a
    file of another architecture (named) or a pickle carrying code.
    """
    if spec.untrained:
        _say(progress, f"building {spec.describe()}")
        cfg = read_arch_config(spec.config) if spec.config else None
        if spec.family == "clipseg":
            arch = cfg["clipseg"] if cfg else CLIPSEG_REFINED
            return _clipseg_model(spec, None, arch, None, device, size=int((cfg or {}).get("input_size", 352)),
                                  context=int((cfg or {}).get("context_length", 77)))
        from .biomed import load_biomedclipseg

        return load_biomedclipseg(spec, cfg, device, progress)
    kind = source_kind(spec.source)
    if kind == "finetuned":
        return load_finetuned(spec, Path(spec.source).expanduser(), device, progress)
    if spec.family != "clipseg":
        from .biomed import load_biomedclipseg

        return load_biomedclipseg(spec, read_arch_config(spec.config) if spec.config else None, device, progress)
    if kind == "safetensors":
        cfg = read_arch_config(spec.config) if spec.config else {}
        _say(progress, f"reading weights {spec.source}")
        return _clipseg_model(spec, None, cfg.get("clipseg", CLIPSEG_REFINED), Path(spec.source).expanduser(), device,
                              size=int(cfg.get("input_size", 352)), context=int(cfg.get("context_length", 77)))
    folder = hub_folder(spec.source, spec, progress) if kind == "hub" else Path(spec.source).expanduser()
    _say(progress, f"reading weights from {folder}")
    return _clipseg_model(spec, folder, folder_clipseg_arch(folder), weights_file(folder), device)


def load_finetuned(spec: VlsmSpec, folder: Path, device: str, progress=None) -> VlsmModel:
    """A folder written by ``napari-vip finetune`` (whichever method made it)."""
    cfg = json.loads((folder / "config.json").read_text())
    method = cfg.get("method", "vlsm")
    family = cfg.get("family", spec.family)
    if method in METHOD_LOADERS or method == "cotexnet":
        if method not in METHOD_LOADERS:
            import importlib

            importlib.import_module(f"{__package__}.{method}")
        return METHOD_LOADERS[method](folder, cfg, spec, device)
    _say(progress, f"reading fine-tuned {family} from {folder}")
    weights = weights_file(folder)
    if family == "clipseg":
        return _clipseg_model(spec, None, cfg["clipseg"], weights, device, method=method,
                              size=int(cfg["input_size"]), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                              context=int(cfg["context_length"]), tok_folder=folder / "tokenizer",
                              extra_config={k: cfg[k] for k in ("base", "recipe") if k in cfg})
    from .biomed import load_biomedclipseg

    return load_biomedclipseg(spec, cfg, device, progress, weights=weights, method=method, folder=folder)


def default_arch(family: str) -> dict:
    """The released architecture config of ``family`` (CLIPSeg refined; BiomedCLIPSeg needs the hub)."""
    if family == "clipseg":
        return {"family": "clipseg", "input_size": 352, "context_length": 77, "clipseg": CLIPSEG_REFINED}
    return {"family": family, "input_size": 224, "context_length": 256, "open_clip": BIOMEDCLIP_HUB_ID,
            "clipseg": CLIPSEG_REFINED}


__all__ = ["load_vlsm", "load_finetuned", "read_arch_config", "default_arch", "CLIPSEG_REFINED", "METHOD_LOADERS",
           "CLIPSEG_HUB_ID", "CLIP_MEAN", "CLIP_STD"]
