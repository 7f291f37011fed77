"""Small real VLSM architectures with random weights, saved the way users get them (tests import this).

- :func:`tiny_clipseg_arch`: a CLIPSeg config small enough for CPU tests but of the released shape (ViT patch 16
  trained at 224, run at the processor's 352 with interpolated position embeddings; refined decoder), or a
  smaller one for training tests.
- :func:`save_clipseg_folder`: a Hugging Face folder (``config.json``, ``model.safetensors``, CLIP tokenizer
  files written from open_clip's BPE vocabulary, ``preprocessor_config.json``) as ``from_pretrained`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def tiny_clipseg_arch(input_size: int = 352, patch: int = 16, hidden: int = 32, layers: int = 2,
                      reduce_dim: int = 16, complex_conv: bool = True) -> dict:
    """CLIPSegConfig kwargs: 2-layer towers of width ``hidden``; the vision tower is trained at 224 (as
    CLIPSeg's) when ``input_size`` is 352, else at ``input_size``."""
    return {
        "extract_layers": list(range(layers)), "reduce_dim": reduce_dim, "conditional_layer": 0,
        "use_complex_transposed_convolution": complex_conv, "projection_dim": hidden,
        "decoder_num_attention_heads": 2, "decoder_intermediate_size": 2 * reduce_dim,
        "text_config": {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_attention_heads": 2,
                        "num_hidden_layers": layers, "max_position_embeddings": 77, "vocab_size": 49408},
        "vision_config": {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_attention_heads": 2,
                          "num_hidden_layers": layers, "image_size": 224 if input_size == 352 else input_size,
                          "patch_size": patch},
    }


def write_arch_json(path, arch: dict, input_size: int, family: str = "clipseg") -> Path:
    """Our architecture JSON (``--vlsm-config``) for ``arch``."""
    path = Path(path)
    path.write_text(json.dumps({"family": family, "input_size": input_size, "context_length": 77, "clipseg": arch}))
    return path


def save_clipseg_folder(folder, arch: dict | None = None, input_size: int = 352, seed: int = 0) -> Path:
    """A Hugging Face CLIPSeg folder with random weights (seeded) and CLIP's tokenizer; returns the folder."""
    import torch
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from napari_vip.models.vlsm.clip_tokenizer import write_clip_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(CLIPSegConfig(**(arch or tiny_clipseg_arch(input_size))))
    model.save_pretrained(str(folder), safe_serialization=True)
    write_clip_tokenizer(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "processor_class": "CLIPSegProcessor", "do_resize": True,
        "size": {"height": input_size, "width": input_size}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}))
    return folder


def disc_and_square(size: int, rng, target: str):
    """``(rgb (size, size, 3) uint8, mask of target (size, size) bool, mask of the other shape)``: one disc and one
    square on a noisy background, at random places that do not overlap, in random colours; the disc is filled, the
    square striped (what a 2-layer random ViT can tell apart patch by patch; shape alone is left to trained
    encoders)."""
    import numpy as np

    yy, xx = np.mgrid[:size, :size]
    img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    r = size // 7
    while True:
        c1 = rng.integers(r + 1, size - r - 1, 2)
        c2 = rng.integers(r + 1, size - r - 1, 2)
        if np.abs(c1 - c2).max() > 2 * r + 3:
            break
    disc = (yy - c1[0]) ** 2 + (xx - c1[1]) ** 2 <= r * r
    square = (np.abs(yy - c2[0]) <= r - 1) & (np.abs(xx - c2[1]) <= r - 1)
    img[disc] = rng.integers(150, 256, 3)
    stripes = square & (yy % 2 == 0)
    img[square] = rng.integers(150, 256, 3)
    img[stripes] = img[stripes] // 3
    return (img, disc, square) if target == "disc" else (img, square, disc)


def tiny_biomedclipseg_config(folder) -> Path:
    """An architecture JSON of BiomedCLIPSeg's shape, tiny: timm's ``test_vit`` (6 blocks, width 64, 160 px) as the
    image tower, a 2-layer BERT (local folder with its WordPiece vocabulary) as the text tower, and a CLIPSeg
    decoder over ``extract_layers`` [1, 3] (block outputs 2 and 4, indexed as released)."""
    from transformers import BertConfig, BertTokenizer

    folder = Path(folder)
    bert = folder / "tiny_bert"
    bert.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "one", "small", "large", "disc", "square", "circle",
             "polyp", "pink", "red", "located", "in", "the", "of", "image", "right", "left", ",", "which", "is"]
    (bert / "vocab.txt").write_text("\n".join(words) + "\n")
    BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
               max_position_embeddings=64).save_pretrained(str(bert))
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(str(bert))
    cfg = {"family": "biomedclipseg", "input_size": 160, "context_length": 32,
           "open_clip": {"embed_dim": 16,
                         "vision_cfg": {"timm_model_name": "test_vit", "timm_model_pretrained": False, "timm_pool": "",
                                        "timm_proj": "linear", "image_size": 160},
                         "text_cfg": {"hf_model_name": "tiny_bert", "hf_tokenizer_name": "tiny_bert",
                                      "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
                                      "context_length": 32}},
           "clipseg": {"extract_layers": [1, 3], "reduce_dim": 16, "conditional_layer": 0, "projection_dim": 16,
                       "use_complex_transposed_convolution": False, "decoder_num_attention_heads": 2,
                       "decoder_intermediate_size": 32,
                       "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2,
                                       "num_hidden_layers": 1},
                       "vision_config": {"hidden_size": 64, "intermediate_size": 32, "num_attention_heads": 2,
                                         "num_hidden_layers": 1, "image_size": 160, "patch_size": 16}}}
    path = folder / "biomedclipseg_tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def write_shapes_dataset(root, n_images: dict, size: int = 64, seed: int = 0) -> Path:
    """A medvlsm-layout data set where **the text decides the target**: every image holds a disc and a square,
    and appears twice per split, once with the prompt ``"disc"`` (mask: the disc) and once with ``"square"``.

    Parameters
    ----------
    n_images : dict
        Images per split, e.g. ``{"train": 24, "val": 6, "test": 8}``.
    """
    import numpy as np
    from PIL import Image

    from napari_vip.io.datasets import medvlsm_entry, write_medvlsm_annotations

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in n_images.items():
        entries = []
        for k in range(n):
            img, disc, square = disc_and_square(size, rng, "disc")
            name = f"{split}_{k:03d}"
            Image.fromarray(img).save(root / "images" / f"{name}.png")
            for target, mask in (("disc", disc), ("square", square)):
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(root / "masks" / f"{name}_{target}.png")
                prompts = {"p0": "", "p1": target, "p2": f"one {target}"}
                entries.append(medvlsm_entry(f"{name}_{target}.png", f"{name}.png", f"{name}_{target}.png", prompts))
        write_medvlsm_annotations(root / "anns" / f"{split}.json", entries)
    return root


def small_clipseg_arch(patch: int = 4) -> dict:
    """A CLIPSeg small enough to fine-tune in a test: 64 px input, patch 4, two 32-wide layers."""
    return tiny_clipseg_arch(input_size=64, patch=patch, hidden=32, layers=2, reduce_dim=32, complex_conv=False)
