"""``napari-vip classify`` end to end, JSON out, and its bad-input messages."""

import json

import numpy as np
import pytest
from PIL import Image

from napari_vip.cli.main import main


@pytest.fixture
def xray_png(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((80, 100)) * 200).astype(np.uint8)
    img[20:40, 30:60] = 250
    path = tmp_path / "xray.png"
    Image.fromarray(img).save(path)
    return str(path)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_classify_json_has_conditions_prompts_and_provenance(capsys, xray_png, tiny_clip_checkpoint, tmp_path):
    arch, path = tiny_clip_checkpoint
    rendered = tmp_path / "seen.png"
    code, out, err = run_cli(capsys, "classify", xray_png, "--box", 30, 20, 59, 39, "--marker", "circle",
                             "--classes", "pneumonia", "normal", "--model", arch, "--checkpoint", path,
                             "--device", "cpu", "--save-rendered", rendered, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["classes"] == ["pneumonia", "normal"]
    assert [c["condition"] for c in d["conditions"]] == ["none", "1: circle"]
    assert d["conditions"][1]["prompts"][0] == "A chest x-ray with signs of pneumonia indicated by a red circle."
    assert d["conditions"][1]["marker"]["box_xyxy"] == [30, 20, 59, 39]
    assert sum(d["conditions"][0]["probabilities"].values()) == pytest.approx(1)
    assert d["untrained"] is False and len(d["provenance"]["weights_sha256"]) == 64
    assert d["provenance"]["model"]["checkpoint"] == path
    seen = np.asarray(Image.open(rendered))
    assert seen.shape == (256, 256, 3) and (np.all(seen == [255, 0, 0], axis=-1)).any()


def test_untrained_text_output_warns(capsys, xray_png, tiny_clip_arch):
    code, out, _ = run_cli(capsys, "classify", xray_png, "--classes", "a", "b", "--model", tiny_clip_arch,
                           "--untrained", "--no-marker-text", "--box", 1, 1, 20, 20, "--marker", "bbox")
    assert code == 0
    assert "untrained" in out.lower()
    assert "A chest x-ray with signs of a." in out


@pytest.mark.parametrize("extra,msg", [
    (["--box", 10, 10, 10, 30], "zero area"),
    (["--box", 500, 500, 600, 600], "outside"),
    (["--classes", "a", "A"], "Duplicate"),
    (["--template", "no class here"], "{c}"),
])
def test_bad_input_exits_2_with_a_message(capsys, xray_png, tiny_clip_arch, extra, msg):
    argv = ["classify", xray_png, "--model", tiny_clip_arch, "--untrained"]
    if "--classes" not in extra:
        argv += ["--classes", "a", "b"]
    code, out, err = run_cli(capsys, *argv, *extra)
    assert code == 2
    assert msg in err and "Traceback" not in err


def test_box_partly_outside_is_clipped_and_said(capsys, xray_png, tiny_clip_arch):
    code, out, _ = run_cli(capsys, "classify", xray_png, "--classes", "a", "b", "--model", tiny_clip_arch,
                           "--untrained", "--box", 80, 60, 150, 120, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["conditions"][1]["marker"]["box_xyxy"] == [80, 60, 99, 79]
    assert any("clipped" in n for n in d["notes"])


def test_unreadable_inputs(capsys, tmp_path, tiny_clip_arch):
    code, _, err = run_cli(capsys, "classify", tmp_path / "nope.png", "--classes", "a", "--untrained")
    assert code == 2 and "does not exist" in err
    stack = tmp_path / "stack.npy"
    np.save(stack, np.zeros((2, 3, 4, 5, 6), np.float32))
    code, _, err = run_cli(capsys, "classify", stack, "--classes", "a", "--untrained", "--model", tiny_clip_arch,
                           "--index", 1, 2)
    assert code == 2 and "give 3 index value(s)" in err
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.zeros((1, 1), np.float32))
    code, _, err = run_cli(capsys, "classify", tiny, "--classes", "a", "--untrained", "--model", tiny_clip_arch)
    assert code == 2 and "1x1" in err
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((8, 8), np.nan, np.float32))
    code, _, err = run_cli(capsys, "classify", nan, "--classes", "a", "--untrained", "--model", tiny_clip_arch)
    assert code == 2 and "NaN" in err


def test_plane_of_a_5d_stack(capsys, tmp_path, tiny_clip_arch):
    stack = np.zeros((2, 3, 4, 16, 20), np.float32)
    stack[1, 2, 3, 4:8, 4:8] = 1
    p = tmp_path / "stack.npy"
    np.save(p, stack)
    code, out, err = run_cli(capsys, "classify", p, "--classes", "a", "b", "--untrained", "--model", tiny_clip_arch,
                             "--index", 1, 2, 3, "--json")
    assert code == 0, err
    assert json.loads(out)["notes"][0] == "plane (1, 2, 3) of an array of shape (2, 3, 4, 16, 20)"


def test_partly_nan_image_is_classified_with_a_note(capsys, tmp_path, tiny_clip_arch):
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    img[0, :5] = np.nan
    img[1, 0] = np.inf
    p = tmp_path / "nan.npy"
    np.save(p, img)
    code, out, _ = run_cli(capsys, "classify", p, "--classes", "a", "b", "--untrained", "--model", tiny_clip_arch,
                           "--json")
    assert code == 0
    assert any("6 non-finite" in n for n in json.loads(out)["notes"])
