"""``napari-vip sentences`` from masks: the released sentence for every training sample, as an editable CSV."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from napari_vip.cli.main import main
from napari_vip.core.region_attributes import mask_attributes, read_sentence_csv


def make_data(folder, n=3):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,prompt,split"]
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 40, (40, 48, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:40, :48]
        m = (yy - 10 - 3 * i) ** 2 + (xx - 34) ** 2 <= 36
        img[m] = (230, 40, 40)
        Image.fromarray(img).save(folder / f"i{i}.png")
        Image.fromarray((m * 255).astype(np.uint8)).save(folder / f"m{i}.png")
        lines.append(f"i{i}.png,m{i}.png,disc,{'train' if i < n - 1 else 'test'}")
    (folder / "d.csv").write_text("\n".join(lines) + "\n")
    return folder / "d.csv"


def test_sentences_from_masks_written_as_csv(tmp_path, capsys):
    data = make_data(tmp_path / "d")
    out = tmp_path / "s.csv"
    assert main(["sentences", str(data), "--dataset", "kvasir", "--out", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["keyword"] == "polyp area" and got["attributes"] == "mask" and len(got["rows"]) == 2
    sentences = read_sentence_csv(out)
    for i in range(2):
        img = np.asarray(Image.open(tmp_path / "d" / f"i{i}.png"))
        m = np.asarray(Image.open(tmp_path / "d" / f"m{i}.png")) > 0
        assert sentences[f"m{i}.png"] == mask_attributes(img, m).sentence("polyp area")
    assert sentences["m0.png"].startswith("1 round ") and " red polyp area, located in the top right" in sentences["m0.png"]


def test_sentences_need_a_keyword(tmp_path, capsys):
    data = make_data(tmp_path / "d")
    assert main(["sentences", str(data)]) == 2
    assert "--keyword" in capsys.readouterr().err
