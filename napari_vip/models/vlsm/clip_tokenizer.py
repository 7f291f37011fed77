"""CLIP's BPE tokenizer files (``vocab.json``, ``merges.txt``) written from the vocabulary open_clip ships.

CLIPSeg uses CLIP's tokenizer (49,408 tokens: 256 byte symbols, the same with ``</w>``, 48,894 merges,
``<|startoftext|>`` 49406, ``<|endoftext|>`` 49407).  open_clip installs its merge list as
``open_clip/bpe_simple_vocab_16e6.txt.gz``; the Hugging Face files are that list in another form, so a model
without tokenizer files (an untrained config, a bare ``.safetensors`` file) gets CLIP's token ids offline.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # as open_clip's SimpleTokenizer reads the file
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of GPT-2/CLIP BPE, in CLIP's order: the bytes that print stand for
    themselves and come first, the others follow as ``chr(256 + n)`` (the order decides the token ids)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def open_clip_bpe_path() -> Path:
    """Path of open_clip's ``bpe_simple_vocab_16e6.txt.gz``."""
    import open_clip

    return Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_tokenizer(folder, context_length: int = 77, bpe_path=None) -> Path:
    """Write ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json`` of CLIP's
    tokenizer into ``folder`` (made if missing); returns the folder.  ``transformers.CLIPTokenizer`` (and
    ``CLIPSegProcessor`` with an image processor config beside them) load it with ``from_pretrained(folder)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_path or open_clip_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": int(context_length), "do_lower_case": True,
         **special}))
    return folder
