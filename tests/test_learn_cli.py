"""``napari-vip learn`` end to end on a tiny folder, then ``napari-vip classify --prompts``."""

from __future__ import annotations

import json

import numpy as np

from napari_vip.cli.main import main


def _folder(root, n=8):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, low in (("dark", 0), ("bright", 180)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(low, low + 76, (32, 32)).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_learn_then_classify_with_prompts(tmp_path, tiny_clip_checkpoint, capsys):
    arch, ckpt = tiny_clip_checkpoint
    data = _folder(tmp_path / "data")
    lib = tmp_path / "lib.json"
    lib.write_text(json.dumps({"version": 1, "classes": {"dark": ["a dark image", "black"],
                                                         "bright": ["a bright image", "white"]}}))
    out = tmp_path / "prompts.pt"
    model = ["--model", arch, "--checkpoint", ckpt, "--device", "cpu"]
    rc = main(["learn", str(data), *model, "--descriptors", str(lib), "--method", "vip", "--epochs", "4",
               "--batch-size", "8", "--compare", "--out", str(out), "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert out.is_file() and res["out"] == str(out)
    assert res["classes"] == ["bright", "dark"]
    assert set(res["evaluation"]) >= {"zero-shot (class names)", "ViP (context + merge prompts)",
                                      "CoOp (context + class name)"}
    assert res["split"] == {**res["split"], "train": 12, "val": 4}
    assert len(res["histories"]["vip"]) == 4 and "val_accuracy" in res["histories"]["vip"][0]
    assert res["evaluation"]["ViP (context + merge prompts)"]["accuracy"] >= 0.75
    assert res["provenance"]["weights_sha256"]

    rc = main(["classify", str(data / "dark" / "0.png"), "--window", "0", "255", "--prompts", str(out), *model,
               "--box", "2", "2", "20", "20", "--json"])
    assert rc == 0
    cls = json.loads(capsys.readouterr().out)
    assert cls["classes"] == ["bright", "dark"]
    assert cls["provenance"]["learned_prompts"]["method"] == "vip"
    assert cls["conditions"][0]["probabilities"]["dark"] > 0.5

    # untrained weights are another model: refused with a clear message
    rc = main(["classify", str(data / "dark" / "0.png"), "--prompts", str(out), "--model", arch, "--untrained",
               "--device", "cpu"])
    assert rc == 2
    assert "learned on" in capsys.readouterr().err


def test_learn_bad_inputs(tmp_path, tiny_clip_checkpoint, capsys):
    arch, ckpt = tiny_clip_checkpoint
    model = ["--model", arch, "--checkpoint", ckpt, "--device", "cpu"]
    (tmp_path / "only" / "a").mkdir(parents=True)
    assert main(["learn", str(tmp_path / "only"), *model, "--method", "coop"]) == 2
    assert "at least 2" in capsys.readouterr().err
    data = _folder(tmp_path / "data", n=3)
    assert main(["learn", str(data), *model, "--method", "vip"]) == 2
    assert "descriptor" in capsys.readouterr().err
    assert main(["classify", str(data / "dark" / "0.png"), *model]) == 2
    assert "--classes" in capsys.readouterr().err
