"""JSRT ``.IMG`` files read wherever images are read, rendered and prompted as the released JSRT loader does.

Expected images are computed here from the released loader's formula (``JSRTDataset.load_image`` of Denner et
al., MIDL 2025): ``np.fromfile(path, ">i2").reshape(2048, 2048)``, window centre 2048 width 4096 to uint8,
``255 - v``, min-max, RGB, Pillow's default resize to 256x256; prompts are the strings of
``JSRTDataset.generate_text_prompt``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from napari_vip.core.errors import VipInputError
from napari_vip.io.jsrt import get_jsrt_reader, read_jsrt
from napari_vip.io.open_image import model_input_from_file, open_image
from napari_vip.models.clip import ClipModel
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.engine import Engine
from napari_vip.worker.evaluate import EvaluateRequest

N = 2048


def write_img(path, seed=0, nodule_rc=None):
    """A JSRT-like ``.IMG``: 12-bit noise, a few out-of-window values (negative, above 4096)."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(200, 3900, (N, N)).astype(np.int32)
    raw[0, :5] = [-7, 0, 4095, 4096, 5000]
    if nodule_rc is not None:
        r, c = nodule_rc
        raw[r - 40:r + 40, c - 40:c + 40] = 100
    raw.astype(">i2").tofile(path)
    return raw


def released_load_image(raw, resize=256):
    """The released JSRT loader's formula, step by step, on the raw values."""
    low, high = 2048 - 4096 // 2, 2048 + 4096 // 2
    v = np.clip(raw.astype(np.int16), low, high)
    v = (v - low) / (high - low) * 255.0
    v = np.clip(v, 0, 255).astype(np.uint8)
    v = 255 - v
    v = (v - v.min()) / (v.max() - v.min())
    image = Image.fromarray((v * 255).astype(np.uint8)).convert("RGB")
    return image.resize((resize, resize)) if resize else image


def test_reader_reads_raw_big_endian_pixels_and_claims_img_files(tmp_path):
    raw = write_img(tmp_path / "JPCLN001.IMG")
    assert get_jsrt_reader(str(tmp_path / "JPCLN001.IMG")) is read_jsrt
    assert get_jsrt_reader(str(tmp_path / "x.png")) is None
    ((data, kwargs, kind),) = read_jsrt(tmp_path / "JPCLN001.IMG")
    assert kind == "image" and data.shape == (N, N) and data.dtype == np.int16 and data.dtype.isnative
    np.testing.assert_array_equal(data, raw.astype(">i2").astype(np.int16))
    assert kwargs["colormap"] == "gray_r" and kwargs["contrast_limits"] == (0.0, 4096.0)
    assert kwargs["metadata"]["vip_format"] == "jsrt-img" and kwargs["scale"] == (0.175, 0.175)
    same, _ = open_image(tmp_path / "JPCLN001.IMG")  # the CLI's front door
    np.testing.assert_array_equal(same, data)
    from napari.layers import Image as ImageLayer

    ImageLayer(data, **kwargs)  # napari accepts the layer keywords


def test_wrong_size_is_a_clear_error(tmp_path):
    (tmp_path / "cut.IMG").write_bytes(b"\0" * 1000)
    with pytest.raises(VipInputError, match="2048 x 2048 big-endian"):
        open_image(tmp_path / "cut.IMG")


def test_manifest_routes_img_files_to_the_jsrt_reader(tmp_path):
    import npe2

    write_img(tmp_path / "a.IMG")
    pm = npe2.PluginManager.instance()
    pm.discover()
    assert "napari-vip.get_jsrt_reader" in [r.command for r in pm.iter_compatible_readers(str(tmp_path / "a.IMG"))]
    from napari.components import ViewerModel

    from napari_vip.io.readers import project_plugin

    viewer = ViewerModel()
    viewer.open(str(tmp_path / "a.IMG"), plugin=project_plugin(tmp_path / "a.IMG"))
    assert viewer.layers[0].data.shape == (N, N) and viewer.layers[0].colormap.name == "gray_r"


def test_paper_recipe_starts_from_the_released_jsrt_loader(tmp_path):
    raw = write_img(tmp_path / "a.IMG")
    full = model_input_from_file(tmp_path / "a.IMG", recipe="paper")
    np.testing.assert_array_equal(full.rgb, np.asarray(released_load_image(raw, resize=None)))
    # the displayed recipe uses the reader's window and inversion instead
    shown = model_input_from_file(tmp_path / "a.IMG", recipe="displayed")
    assert shown.invert and shown.window == (0.0, 4096.0)


class Recorder(ClipModel):
    """Records the renders and prompts it receives; features: mean gray of the render."""

    def __init__(self):
        super().__init__(None, None, None, ModelSpec("recorder", checkpoint="none.pt"), "0" * 64, "cpu")
        self.images, self.prompts = [], []

    def encode_images(self, images):
        self.images += [np.asarray(im).copy() for im in images]
        return torch.nn.functional.normalize(
            torch.tensor([[float(np.asarray(im).mean()) / 255 - 0.5, 0.3] for im in images]), dim=-1)

    def encode_texts(self, prompts):
        self.prompts.append(list(prompts))
        return torch.tensor([[1.0, 0.0] if "malignant" in p else [-1.0, 0.0] for p in prompts])

    def logit_scale(self):
        return 10.0


def test_layout_jsrt_renders_and_prompts_as_the_released_code(tmp_path, monkeypatch):
    model = Recorder()
    monkeypatch.setattr(Engine, "clip", lambda self, spec, device, progress=None: model)
    rows, raws = [], {}
    for i, (label, x, y, size) in enumerate([("benign", 700, 900, 15), ("malignant", 1300, 1000, 22)]):
        name = f"JPCLN00{i + 1}.IMG"
        raws[name] = write_img(tmp_path / name, seed=i, nodule_rc=(y, x))
        rows.append(f"{name}\t{size}\t3\t50\tmale\t{x}\t{y}\t{label}\tl.upper lobe\tsome diagnosis")
    (tmp_path / "CLNDAT_EN.txt").write_text("\n".join(rows) + "\n")
    res = Engine().run(EvaluateRequest(str(tmp_path / "CLNDAT_EN.txt"), ModelSpec("x", checkpoint="none.pt"),
                                       ("none", "bbox", "circle+text"), layout="jsrt", images=str(tmp_path),
                                       bootstrap=0, threads=1))
    assert res.prompts["none"] == ["A chest X-ray with a benign lung nodule.",
                                   "A chest X-ray with a malignant lung nodule."]
    assert res.prompts["circle+text"] == ["A chest X-ray with a benign lung nodule indicated by a red circle.",
                                          "A chest X-ray with a malignant lung nodule indicated by a red circle."]
    assert res.provenance.extra["template"] == "A chest X-ray with a {c} lung nodule{suffix}."
    # renders in sample order, none, bbox, circle: the released loader's image, then its box drawn with ImageDraw
    expected = []
    for name, (x, y, size) in zip(raws, [(700, 900, 15), (1300, 1000, 22)]):
        plain = released_load_image(raws[name])
        expected.append(np.asarray(plain))
        half = 5 * int(size / 0.175)
        ratio = N / 256
        box = (int((x - half) / ratio), int((y - half) / ratio), int((x + half) / ratio), int((y + half) / ratio))
        boxed, circled = plain.copy(), plain.copy()
        ImageDraw.Draw(boxed).rectangle(box, outline="red", width=1)
        ImageDraw.Draw(circled).ellipse(box, outline="red", width=1)
        expected += [np.asarray(boxed), np.asarray(circled)]
    assert len(model.images) == 6
    for got, want in zip(model.images, expected):
        np.testing.assert_array_equal(got, want)


def test_a_user_template_still_wins_for_jsrt(tmp_path, monkeypatch):
    model = Recorder()
    monkeypatch.setattr(Engine, "clip", lambda self, spec, device, progress=None: model)
    for i in range(2):
        write_img(tmp_path / f"J{i}.IMG", seed=i)
    (tmp_path / "CLNDAT_EN.txt").write_text("J0.IMG\t10\t3\t50\tmale\t1000\t1000\tbenign\tx\ty\n"
                                            "J1.IMG\t10\t3\t50\tmale\t1000\t1000\tmalignant\tx\ty\n")
    res = Engine().run(EvaluateRequest(str(tmp_path / "CLNDAT_EN.txt"), ModelSpec("x", checkpoint="none.pt"),
                                       ("none",), layout="jsrt", images=str(tmp_path), bootstrap=0, threads=1,
                                       template="A {modality} with signs of {c}{suffix}."))
    assert res.prompts["none"] == ["A chest x-ray with signs of benign.", "A chest x-ray with signs of malignant."]


def test_classify_command_line_reads_img_and_sees_the_released_loader(tmp_path, tiny_clip_checkpoint, capsys):
    import json

    from napari_vip.cli.main import main

    arch, ckpt = tiny_clip_checkpoint
    raw = write_img(tmp_path / "JPCLN001.IMG")
    seen = tmp_path / "seen.png"
    assert main(["classify", str(tmp_path / "JPCLN001.IMG"), "--classes", "benign", "malignant", "--model", arch,
                 "--checkpoint", ckpt, "--device", "cpu", "--box", "900", "900", "1200", "1150", "--marker", "circle",
                 "--save-rendered", str(seen), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provenance"]["recipe"] == "paper" and out["provenance"]["pillow"]
    expected = released_load_image(raw)
    ImageDraw.Draw(expected).ellipse((int(900 / 8), int(900 / 8), int(1200 / 8), int(1150 / 8)), outline="red")
    np.testing.assert_array_equal(np.asarray(Image.open(seen).convert("RGB")), np.asarray(expected))
