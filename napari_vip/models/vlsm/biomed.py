"""BiomedCLIPSeg and BiomedCLIPSeg-D (medvlsm ``src/models/biomedclipseg.py``): open_clip BiomedCLIP towers,
frozen, and a CLIPSeg decoder: randomly initialised (``biomedclipseg``, ``rand_init_decoder=True``) or
CLIPSeg's pretrained one (``biomedclipseg-d``).  224x224, CLIP mean/std, PubMedBERT tokenizer, context 256.

Sources: the hub (BiomedCLIP from ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``, the decoder's
config and, for ``-d``, weights from ``CIDAS/clipseg-rd64-refined``), an architecture JSON (untrained), or a
folder written by ``napari-vip finetune`` (its text tower's config and tokenizer in ``text_tower/``).
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

from ...core.errors import VipInputError
from ..checkpoint import load_into, load_state_dict, sha256_file
from .model import CLIP_MEAN, CLIP_STD, VlsmModel
from .spec import BIOMEDCLIP_HUB_ID, CLIPSEG_HUB_ID


def _build(open_clip_cfg: dict, decoder_arch: dict):
    import open_clip
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from .nets import BiomedClipSegNet

    cfg = copy.deepcopy(open_clip_cfg)
    text = dict(cfg["text_cfg"])
    text["hf_model_pretrained"] = False  # the weights come from our file, never from a download
    towers = open_clip.model.CustomTextCLIP(cfg["embed_dim"], cfg["vision_cfg"], text)
    config = CLIPSegConfig(**decoder_arch)
    decoder = CLIPSegForImageSegmentation(config).decoder
    return BiomedClipSegNet(towers, decoder, config.extract_layers)


def _tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise VipInputError(f"BiomedCLIPSeg: the text tokenizer {name!r} could not be read ({type(exc).__name__}); "
                            "give a folder with its tokenizer files.") from None


def _freeze(net) -> None:
    """As released (``freeze_encoder=True``): both BiomedCLIP towers frozen."""
    net.biomedclip.requires_grad_(False)


def load_biomedclipseg(spec, cfg: dict | None, device: str, progress=None, weights: Path | None = None,
                       method: str = "released", folder: Path | None = None) -> VlsmModel:
    """A BiomedCLIPSeg(-D) model.

    Parameters
    ----------
    cfg : dict or None
        An architecture config (``open_clip``, ``clipseg``, ``input_size``, ``context_length``) for an untrained
        model or a fine-tuned folder's; ``None``: the released towers from the hub.
    weights : Path or None
        The fine-tuned folder's ``model.safetensors``.
    """
    import torch

    say = progress or (lambda text: None)
    if cfg is None and not spec.untrained:
        return _from_hub(spec, device, say)
    if cfg is None:
        raise VipInputError(f"{spec.describe()}: an untrained BiomedCLIPSeg needs --vlsm-config (an architecture JSON "
                            "whose text tower is a local folder); the released architecture needs the hub.")
    oc = copy.deepcopy(cfg["open_clip"])
    text = oc["text_cfg"]
    if folder is not None and not Path(text["hf_model_name"]).is_absolute():
        text["hf_model_name"] = str(folder / text["hf_model_name"])
        text["hf_tokenizer_name"] = str(folder / text.get("hf_tokenizer_name", text["hf_model_name"]))
    say(f"building {spec.describe()}")
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = _build(oc, cfg["clipseg"])
        sha, wid = None, f"untrained-{uuid.uuid4().hex}"
    else:
        net = _build(oc, cfg["clipseg"])
        state = load_state_dict(weights, what=spec.describe())
        load_into(net, state, f"{spec.family} (the folder's architecture)", weights)
        sha = wid = sha256_file(weights)
    _freeze(net)
    out_cfg = {"open_clip": cfg["open_clip"], "clipseg": cfg["clipseg"]}
    out_cfg.update({k: cfg[k] for k in ("base", "recipe") if k in cfg})
    return VlsmModel(spec, net.to(device).eval(), spec.family, int(cfg.get("input_size", 224)),
                     tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD)),
                     _tokenizer(text.get("hf_tokenizer_name", text["hf_model_name"])),
                     int(cfg.get("context_length", 256)), sha, wid,
                     method="untrained" if spec.untrained else method, device=device, config=out_cfg)


def _from_hub(spec, device, say) -> VlsmModel:
    from .sources import folder_clipseg_arch, hub_folder, weights_file

    say(f"fetching {BIOMEDCLIP_HUB_ID} (needs the network)")
    try:
        import open_clip
        from huggingface_hub import hf_hub_download

        repo = BIOMEDCLIP_HUB_ID[len("hf-hub:"):]
        oc_cfg = json.loads(Path(hf_hub_download(repo, "open_clip_config.json")).read_text())["model_cfg"]
        towers_file = Path(hf_hub_download(repo, "open_clip_pytorch_model.bin"))
        towers = open_clip.create_model(BIOMEDCLIP_HUB_ID)
    except Exception as exc:
        raise VipInputError(
            f"{spec.describe()}: BiomedCLIP could not be fetched from the hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}). Without network, fine-tune on a machine with network and give the "
            "folder `napari-vip finetune` wrote as --vlsm-checkpoint.") from None
    seg_folder = hub_folder(CLIPSEG_HUB_ID, spec, lambda text: say(text))
    arch = folder_clipseg_arch(seg_folder)
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from .nets import BiomedClipSegNet

    config = CLIPSegConfig(**arch)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        decoder = CLIPSegForImageSegmentation(config).decoder
    shas = {"biomedclip": sha256_file(towers_file)}
    if spec.family == "biomedclipseg-d":
        wfile = weights_file(seg_folder)
        state = load_state_dict(wfile, what=spec.describe())
        dec = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        load_into(decoder, dec, "the CLIPSeg decoder", wfile)
        shas["clipseg_decoder"] = sha256_file(wfile)
    net = BiomedClipSegNet(towers, decoder, config.extract_layers)
    _freeze(net)
    sha = shas["biomedclip"] if len(shas) == 1 else "+".join(shas.values())
    tok = open_clip.get_tokenizer(BIOMEDCLIP_HUB_ID).tokenizer
    cfg = {"open_clip": oc_cfg, "clipseg": arch, "decoder": "pretrained" if spec.family.endswith("-d") else
           "random (as released: BiomedCLIPSeg's decoder is learned by fine-tuning)"}
    return VlsmModel(spec, net.to(device).eval(), spec.family, 224, CLIP_MEAN, CLIP_STD, tok, 256, sha, sha,
                     device=device, config=cfg)


def save_text_tower(model: VlsmModel, folder: Path) -> dict:
    """Write the text tower's config and tokenizer to ``folder/text_tower``; returns the ``open_clip`` config
    pointing at it (relative), so the fine-tuned folder loads offline."""
    sub = Path(folder) / "text_tower"
    sub.mkdir(parents=True, exist_ok=True)
    model.module.biomedclip.text.config.save_pretrained(str(sub))
    model.tokenizer.save_pretrained(str(sub))
    oc = copy.deepcopy(model.config["open_clip"])
    oc["text_cfg"]["hf_model_name"] = "text_tower"
    oc["text_cfg"]["hf_tokenizer_name"] = "text_tower"
    return oc
