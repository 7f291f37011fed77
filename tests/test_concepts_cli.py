"""CLI twins: ``napari-vip concepts``, ``napari-vip symptoms`` and ``napari-vip classify --concepts``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.draw import disk
from skimage.io import imsave

from napari_vip.cli.main import main
from napari_vip.core.symptoms import save_library


@pytest.fixture
def files(tmp_path):
    img = np.full((120, 160), 60, dtype=np.uint8)
    mask = np.zeros((120, 160), dtype=np.uint8)
    rr, cc = disk((25, 30), 9)
    mask[rr, cc] = 255
    img[mask > 0] = 220
    imsave(tmp_path / "img.png", img)
    imsave(tmp_path / "mask.png", mask, check_contrast=False)
    labels = np.zeros((120, 160), dtype=np.uint8)
    labels[mask > 0] = 1
    labels[90:110, 120:150] = 2
    np.save(tmp_path / "labels.npy", labels)
    np.save(tmp_path / "small.npy", np.ones((10, 10), np.uint8))
    return tmp_path


def run_json(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture(autouse=True)
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CONFIG_DIR", str(tmp_path / "config"))


def test_concepts_from_a_mask(files, capsys):
    d = run_json(capsys, ["concepts", str(files / "img.png"), "--mask", str(files / "mask.png"),
                          "--keyword", "nodule", "--json"])
    assert d["sentence"] == "1 round small bright nodule, located in the top left of the image."
    assert d["source"] == "mask" and d["variants"]["p2"] == "round nodule"
    assert d["provenance"]["template"].startswith("{number} {shape}")


def test_concepts_from_a_box_and_a_label(files, capsys):
    d = run_json(capsys, ["concepts", str(files / "img.png"), "--box", "20", "15", "40", "35", "--keyword",
                          "nodule", "--json"])
    assert d["source"] == "box" and d["location"] == "top left" and d["color"] == "bright"
    d = run_json(capsys, ["concepts", str(files / "img.png"), "--mask", str(files / "labels.npy"), "--label", "2",
                          "--keyword", "patch", "--number-words", "--json"])
    assert d["sentence"].startswith("one ") and d["location"] == "bottom right"
    main(["concepts", str(files / "img.png"), "--mask", str(files / "mask.png"), "--variant", "p3",
          "--keyword", "nodule"])
    assert capsys.readouterr().out.splitlines()[0] == "round bright nodule"


def test_concepts_bad_input(files, capsys):
    assert main(["concepts", str(files / "img.png"), "--mask", str(files / "small.npy"), "--json"]) == 2
    assert "shape (10, 10)" in capsys.readouterr().err
    assert main(["concepts", str(files / "img.png"), "--mask", str(files / "labels.npy"), "--label", "7"]) == 2
    assert "labels present: [1, 2]" in capsys.readouterr().err
    np.save(files / "empty.npy", np.zeros((120, 160), np.uint8))
    assert main(["concepts", str(files / "img.png"), "--mask", str(files / "empty.npy")]) == 2
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --box and --mask are exclusive; one is required
        main(["concepts", str(files / "img.png")])


def test_symptoms_lists_the_library(capsys, tmp_path):
    d = run_json(capsys, ["symptoms", "pneumonia", "normal", "unknown thing", "--modality", "chest x-ray", "--json"])
    assert len(d["classes"]["pneumonia"]) >= 4 and any("lung" in x for x in d["classes"]["normal"])
    assert d["missing"] == ["unknown thing"]
    assert main(["symptoms", "x", "--generate", "--json"]) == 2
    assert "No language model endpoint" in capsys.readouterr().err


def test_classify_with_concepts(files, capsys, tiny_clip_checkpoint):
    arch, ckpt = tiny_clip_checkpoint
    lib = save_library({"nodule": ["small round opacity", "coin lesion"], "normal": ["clear lung fields"]},
                       files / "lib.json")
    d = run_json(capsys, ["classify", str(files / "img.png"), "--classes", "nodule", "normal", "--box", "20", "15",
                          "40", "35", "--concepts", str(lib), "--model", arch, "--checkpoint", ckpt, "--device", "cpu",
                          "--json"])
    assert d["method"].startswith("concept zero-shot") and d["library"] == str(lib)
    cond = d["conditions"][1]
    assert cond["condition"] == "1: circle"
    assert cond["best_concept"]["normal"] == "clear lung fields"
    assert cond["best_concept"]["nodule"] in ("small round opacity", "coin lesion")
    assert sum(cond["probabilities"].values()) == pytest.approx(1.0)
    assert "indicated by a red circle" in cond["concepts"]["nodule"][0]["prompt"]
    assert d["provenance"]["weights_sha256"] and d["untrained"] is False
    # a class the library lacks: a clear message, status 2
    assert main(["classify", str(files / "img.png"), "--classes", "nodule", "mass", "--concepts", str(lib),
                 "--model", arch, "--checkpoint", ckpt]) == 2
    assert "no concepts for 'mass'" in capsys.readouterr().err
    assert main(["classify", str(files / "img.png"), "--concepts", str(lib), "--model", arch, "--checkpoint",
                 ckpt]) == 2
    assert "--classes" in capsys.readouterr().err
    (files / "bad.json").write_text('{"version": 1,\n"classes": {"nodule": [1]}}')
    assert main(["classify", str(files / "img.png"), "--classes", "nodule", "--concepts", str(files / "bad.json"),
                 "--model", arch, "--checkpoint", ckpt]) == 2
    assert "line 2" in capsys.readouterr().err
