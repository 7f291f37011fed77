"""Where VLSM weights come from: the released architecture, hub folders, weight files and preprocessing configs
(shared by :mod:`.build` and :mod:`.biomed`)."""

from __future__ import annotations

import json
from pathlib import Path

from ...core.errors import VipInputError

#: ``CIDAS/clipseg-rd64-refined``'s architecture (ViT-B/16 image tower, CLIP text tower, refined decoder).
CLIPSEG_REFINED = {
    "extract_layers": [3, 6, 9], "reduce_dim": 64, "conditional_layer": 0, "use_complex_transposed_convolution": True,
    "projection_dim": 512, "decoder_num_attention_heads": 4, "decoder_intermediate_size": 2048,
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
                    "max_position_embeddings": 77, "vocab_size": 49408},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                      "num_hidden_layers": 12, "image_size": 224, "patch_size": 16},
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Loaders of fine-tuned folders made by other methods: ``method -> fn(folder, config, spec, device) -> VlsmModel``
#: (``napari_vip.models.vlsm.cotexnet`` registers ``"cotexnet"`` when imported).
METHOD_LOADERS: dict = {}


def _say(progress, text):
    if progress:
        progress(text)


def hub_folder(repo_id: str, spec, progress) -> Path:
    """Local folder of the hub repository ``repo_id`` (downloaded if not cached)."""
    _say(progress, f"fetching {repo_id} from the Hugging Face hub")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model"]))
    except Exception as exc:  # offline, unknown repo, no permission
        raise VipInputError(
            f"{spec.describe()}: could not get {repo_id!r} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}). Without network, download it on another machine "
            f"(`huggingface-cli download {repo_id} --local-dir DIR`) and give DIR as --vlsm-checkpoint.") from None


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise VipInputError(f"VLSM folder {str(folder)!r} has no weights ({' or '.join(WEIGHT_FILES)}); give a Hugging "
                        "Face folder of CLIPSeg or a folder written by `napari-vip finetune`.")


def preprocessing(folder: Path | None, default_size: int, mean, std) -> tuple[int, tuple, tuple]:
    """``(input_size, mean, std)`` from a folder's ``preprocessor_config.json`` (else the defaults)."""
    if folder is None or not (folder / "preprocessor_config.json").is_file():
        return default_size, tuple(mean), tuple(std)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    size = cfg.get("size", default_size)
    if isinstance(size, dict):
        size = size.get("height", size.get("shortest_edge", default_size))
    return int(size), tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))


def folder_clipseg_arch(folder: Path) -> dict:
    if not (folder / "config.json").is_file():
        raise VipInputError(f"VLSM folder {str(folder)!r} has no config.json; give a Hugging Face CLIPSeg folder.")
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") not in (None, "clipseg"):
        raise VipInputError(f"{str(folder)!r} holds a {cfg.get('model_type')!r} model, not CLIPSeg; choose the "
                            "matching --vlsm family or a CLIPSeg folder.")
    keep = dict(CLIPSEG_REFINED)
    for key in list(CLIPSEG_REFINED) + ["decoder_hidden_act", "logit_scale_init_value"]:
        if key in cfg:
            keep[key] = cfg[key]
    for key in ("text_config", "vision_config"):
        if isinstance(cfg.get(key), dict):
            keep[key] = {k: v for k, v in cfg[key].items()
                         if not k.startswith(("_", "transformers_version", "architectures", "id2label", "label2id"))
                         and k not in ("model_type",)}
    return keep
