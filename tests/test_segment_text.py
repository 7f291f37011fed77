"""Text to mask: heatmap -> best connected region -> box and positive points -> SAM, with each step's provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.core.text_region import region_prompt


def test_region_prompt_picks_the_strongest_region():
    heat = np.zeros((40, 60))
    heat[5:10, 5:10] = 0.6  # weak and small
    heat[20:30, 30:50] = 0.8  # strong and large: this one
    heat[25, 45] = 1.0  # its peak
    rp = region_prompt(heat, 0.5, n_points=2)
    assert rp.n_regions == 2
    assert rp.box_xyxy == (30.0, 20.0, 49.0, 29.0)  # (x0, y0, x1, y1)
    assert rp.points_xy[0].tolist() == [45.0, 25.0]  # the peak, as (x, y)
    assert rp.region[rp.points_xy[:, 1].astype(int), rp.points_xy[:, 0].astype(int)].all()  # points inside
    assert rp.region.sum() == 200 and not rp.region[5:10, 5:10].any()


def test_sum_prefers_large_over_a_single_hot_pixel():
    heat = np.zeros((30, 30))
    heat[2, 2] = 1.0
    heat[10:20, 10:20] = 0.7
    rp = region_prompt(heat)
    assert rp.box_xyxy == (10.0, 10.0, 19.0, 19.0) and len(rp.points_xy) == 1


def test_one_pixel_region_gets_a_box_with_area_and_flat_map_is_refused():
    heat = np.zeros((10, 10))
    heat[0, 4] = 1.0
    x0, y0, x1, y1 = region_prompt(heat).box_xyxy
    assert x1 > x0 and y1 > y0 and y0 == 0.0
    with pytest.raises(VipInputError, match="flat"):
        region_prompt(np.zeros((10, 10)))
    with pytest.raises(VipInputError, match="between 0 and 1"):
        region_prompt(heat, threshold=1.5)


@pytest.fixture
def image_file(tmp_path):
    from PIL import Image

    img = np.zeros((48, 64), np.uint8)
    img[10:30, 20:50] = 220
    path = tmp_path / "in.png"
    Image.fromarray(img).save(path)
    return path


def test_text_to_mask_untrained_returns_mask_and_step_provenance(tiny_clip_arch, tiny_sam_checkpoint, image_file,
                                                                  tmp_path, capsys, monkeypatch):
    from napari_vip.cli.main import main

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    arch, path = tiny_sam_checkpoint
    out = tmp_path / "o" / "mask.png"
    rc = main(["segment", str(image_file), "--text", "small bright nodule", "--clip-model", tiny_clip_arch,
               "--clip-untrained", "--sam-arch", arch, "--sam-checkpoint", path, "--device", "cpu",
               "--out", str(out), "--heatmap", str(tmp_path / "o" / "heat.npy"), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["untrained"] is True  # the CLIP step was untrained
    steps = {s["step"]: s for s in d["steps"]}
    assert list(steps) == ["similarity", "region", "sam"]
    assert steps["similarity"]["text"] == "small bright nodule" and steps["similarity"]["untrained"] is True
    assert steps["sam"]["untrained"] is False and steps["sam"]["weights_sha256"]
    x0, y0, x1, y1 = d["region"]["box_xyxy"]
    assert 0 <= x0 < x1 <= 63 and 0 <= y0 < y1 <= 47  # inside the image
    assert steps["sam"]["prompts"]["boxes_xyxy"] == [d["region"]["box_xyxy"]]
    assert steps["sam"]["prompts"]["point_labels"] == [1] * len(d["region"]["points_xy"])
    from PIL import Image

    mask = np.asarray(Image.open(out))
    assert mask.shape == (48, 64) and mask.any()
    heat = np.load(tmp_path / "o" / "heat.npy")
    assert heat.shape == (48, 64) and heat.min() >= 0 and heat.max() <= 1
    side = json.loads((tmp_path / "o" / "mask.json").read_text())
    assert side["objects"][0]["source"] == "text" and side["objects"][0]["prompts"]["text"] == "small bright nodule"


def test_text_with_box_or_empty_text_is_refused(tiny_clip_arch, tiny_sam_arch, image_file, capsys):
    from napari_vip.cli.main import main

    common = ["--clip-model", tiny_clip_arch, "--clip-untrained", "--sam-arch", tiny_sam_arch, "--untrained",
              "--device", "cpu", "--no-disk-cache"]
    assert main(["segment", str(image_file), "--text", "nodule", "--box", "1", "1", "9", "9", *common]) == 2
    assert "leave out --box" in capsys.readouterr().err
    assert main(["segment", str(image_file), "--text", "  ", *common]) == 2
    assert "Type a phrase" in capsys.readouterr().err


def test_text_to_mask_is_cancelled_inside_its_sam_step(tiny_clip_arch, tiny_sam_checkpoint, tmp_path, monkeypatch):
    """Cancel asked once the region is chosen: the job stops before SAM embeds the image."""
    from napari_vip.models.sam import SamSpec
    from napari_vip.models.spec import ModelSpec
    from napari_vip.worker.engine import Engine, ProgressReporter
    from napari_vip.worker.protocol import Cancelled
    from napari_vip.worker.segment import SegmentEmbedRequest, TextSegmentRequest

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    arch, path = tiny_sam_checkpoint
    image = np.zeros((48, 64, 3), np.uint8)
    image[10:30, 20:50] = 220
    sam = SamSpec(arch, checkpoint=path)
    steps = []
    engine = Engine()
    req = TextSegmentRequest(image, sam, text="bright square", clip=ModelSpec(tiny_clip_arch, untrained=True),
                             device="cpu", disk_cache=False)
    with pytest.raises(Cancelled):
        engine.run(req, ProgressReporter(lambda done, total, text: steps.append(text),
                                         lambda: "region chosen; segmenting" in steps))
    assert steps[-1] == "region chosen; segmenting"
    assert engine.run(SegmentEmbedRequest(image, sam, device="cpu", disk_cache=False)).source == "computed"
    finished = []
    result = Engine().run(req, ProgressReporter(lambda done, total, text: finished.append((done, total, text))))
    assert result.segment.masks.shape[2:] == (48, 64)
    sam_steps = finished[finished.index((2, 5, "region chosen; segmenting")) + 1:]
    assert "loading SAM" in [t for _, _, t in sam_steps] and all(2 <= d <= 5 and n == 5 for d, n, _ in sam_steps)
