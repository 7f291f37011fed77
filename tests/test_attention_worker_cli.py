"""The attention job through the Engine and the ``napari-vip attention`` command."""

import json

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.markers import Marker, crop_box
from napari_vip.models.spec import ModelSpec
from napari_vip.worker.attention import AttentionRequest, check_class
from napari_vip.worker.engine import Engine


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 200, (90, 120, 3), dtype=np.uint8)
    img[30:50, 60:90] = 255
    return img


def _request(rgb, arch, markers, method="gradcam", class_name="pneumonia", classes=("pneumonia", "normal")):
    return AttentionRequest(rgb, markers, class_name, list(classes), method, ModelSpec(arch, untrained=True),
                            device="cpu")


def test_maps_per_condition_with_focus_and_frames(engine, rgb, tiny_clip_arch):
    box = (60.0, 30.0, 89.0, 49.0)
    markers = [Marker(box, "circle"), Marker(box, "crop")]
    res = engine.run(_request(rgb, tiny_clip_arch, markers))
    assert [c.name for c in res.conditions] == ["none", "1: circle", "2: crop"]
    none, circle, crop = res.conditions
    assert none.focus is None and none.heatmap.shape == (90, 120)
    assert circle.prompt == "A chest x-ray with signs of pneumonia indicated by a red circle."
    assert circle.heatmap.shape == (90, 120) and circle.origin_rc == (0, 0)
    # the circle's focus is the share of its own map inside the box
    mask = np.zeros((90, 120), bool)
    mask[30:50, 60:90] = True
    assert circle.focus.fraction == pytest.approx(circle.heatmap[mask].sum() / circle.heatmap.sum(), rel=1e-6)
    assert circle.focus.area_fraction == pytest.approx(mask.mean())
    # the crop's map is in the crop's frame, placed at the crop's origin
    x0, y0, x1, y1 = crop_box(box, (90, 120))
    assert crop.heatmap.shape == (y1 - y0 + 1, x1 - x0 + 1) and crop.origin_rc == (y0, x0)
    assert crop.focus.area_fraction > circle.focus.area_fraction
    assert any("crop's frame" in n for n in crop.notes)
    # difference maps: marker minus baseline in the image frame, none for the crop
    np.testing.assert_allclose(res.difference("1: circle"), circle.heatmap - none.heatmap)
    assert res.difference("2: crop") is None and res.difference("none") is None
    stack = res.stack()
    assert stack.shape == (3, 90, 120)
    np.testing.assert_array_equal(stack[2, y0:y1 + 1, x0:x1 + 1], crop.heatmap)
    assert not stack[2, :y0].any()
    d = json.loads(json.dumps(res.to_dict()))
    assert d["untrained"] is True and d["provenance"]["method"] == "gradcam"
    assert d["conditions"][1]["focus"]["fraction"] == pytest.approx(circle.focus.fraction)
    assert 0.0 < d["conditions"][1]["probability"] < 1.0


def test_timm_tower_through_the_engine(engine, rgb, tiny_clip_arch):
    from pathlib import Path

    arch = str(Path(tiny_clip_arch).parent / "vip-tiny-timm.json")
    res = engine.run(_request(rgb, arch, [Marker((10, 10, 40, 40), "bbox")], method="rollout"))
    assert res.conditions[1].grid.shape == (10, 10)
    assert 0.0 <= res.conditions[1].focus.fraction <= 1.0


def test_bad_class_and_method_are_refused(engine, rgb, tiny_clip_arch):
    with pytest.raises(VipInputError, match="'effusion' is not in the current list"):
        engine.run(_request(rgb, tiny_clip_arch, [], class_name="effusion"))
    with pytest.raises(VipInputError, match="Unknown attention method"):
        engine.run(_request(rgb, tiny_clip_arch, [], method="lime"))
    assert check_class("Pneumonia", ["pneumonia", "normal"])[0] == "pneumonia"


def test_cli_json_and_npy(tmp_path, tiny_clip_arch, capsys):
    from napari_vip.cli.main import main

    rng = np.random.default_rng(0)
    path = tmp_path / "xray.npy"
    np.save(path, (rng.random((60, 80)) * 4000).astype(np.uint16))
    out = tmp_path / "heat.npy"
    rc = main(["attention", str(path), "--box", "20", "10", "50", "40", "--marker", "circle", "--class", "pneumonia",
               "--classes", "pneumonia", "normal", "--method", "similarity", "--out", str(out), "--json",
               "--model", tiny_clip_arch, "--untrained", "--device", "cpu"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert [c["condition"] for c in d["conditions"]] == ["none", "1: circle"]
    assert d["method"] == "similarity" and d["class"] == "pneumonia" and d["untrained"] is True
    assert d["conditions"][1]["grid_hw"] == [4, 4]
    heat = np.load(out)
    assert heat.shape == (2, 60, 80) and heat.dtype == np.float32 and 0 <= heat.min() and heat.max() <= 1
    f = d["conditions"][1]["focus"]
    assert f["fraction"] == pytest.approx(heat[1, 10:41, 20:51].sum() / heat[1].sum(), rel=1e-5)


def test_cli_refuses_a_class_outside_the_list(tmp_path, tiny_clip_arch, capsys):
    from napari_vip.cli.main import main

    path = tmp_path / "x.npy"
    np.save(path, np.zeros((20, 20), np.uint8))
    rc = main(["attention", str(path), "--class", "effusion", "--classes", "pneumonia", "normal",
               "--model", tiny_clip_arch, "--untrained"])
    assert rc == 2
    assert "not in the current list" in capsys.readouterr().err
