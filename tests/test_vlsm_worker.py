"""Text -> mask with a VLSM through the Engine; Refine with SAM; the candidate commits like SAM's; the CLI twin."""

from __future__ import annotations

import json

import numpy as np
import pytest
from vlsm_fixtures import save_clipseg_folder

from napari_vip.core.errors import VipInputError
from napari_vip.models.vlsm import VlsmSpec, load_vlsm
from napari_vip.worker.engine import Engine
from napari_vip.worker.vlsm import VlsmSegmentRequest, mask_box_xyxy, sam_mask_input


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory):
    return save_clipseg_folder(tmp_path_factory.mktemp("clipseg"), seed=3)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (90, 120, 3)).astype(np.uint8)
    img[20:50, 60:100] = (220, 120, 160)
    return img


def _request(image, folder, **kw):
    return VlsmSegmentRequest(image, "one small pink polyp", VlsmSpec("clipseg", source=str(folder)), device="cpu",
                              disk_cache=False, **kw)


def test_vlsm_candidate_is_the_models_mask(clipseg_dir, image):
    res = Engine().run(_request(image, clipseg_dir))
    want = load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir))).predict(image, "one small pink polyp")
    assert res.segment.masks.shape == (1, 1, 90, 120)
    assert np.array_equal(res.segment.masks[0, 0], want.mask) and np.array_equal(res.vlsm_mask, want.mask)
    assert np.allclose(res.prob, want.prob)
    d = res.to_dict()
    json.dumps(d)
    assert d["steps"][0]["step"] == "vlsm" and d["steps"][0]["family"] == "clipseg"
    assert len(d["steps"][0]["weights_sha256"]) == 64 and d["untrained"] is False and not d["refined_by_sam"]
    assert d["text"] == "one small pink polyp"
    assert res.segment.low_res_logits.shape == (1, 1, 256, 256)


def test_refine_with_sam_gets_the_box_and_the_logits(clipseg_dir, image, tiny_sam_checkpoint):
    from napari_vip.models.sam import SamSpec
    from napari_vip.worker.segment import SegmentRequest

    arch, path = tiny_sam_checkpoint
    sam = SamSpec(arch, checkpoint=path)
    eng = Engine()
    res = eng.run(_request(image, clipseg_dir, refine_sam=True, sam=sam))
    assert res.refined and [s["step"] for s in res.steps] == ["vlsm", "sam"]
    box = mask_box_xyxy(res.vlsm_mask)
    assert res.segment.boxes_xyxy == [box]
    # the same SAM call made by hand: box of the VLSM mask, its logits in SAM's input frame
    m = load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir)))
    logits = m.predict(image, "one small pink polyp").logits_model
    s = 128  # the tiny SAM's input size; SAM keeps the aspect ratio: 90x120 -> 96x128
    mask_in = sam_mask_input(logits, (96, 128), s)
    direct = eng.run(SegmentRequest(image, sam, boxes_xyxy=[box], mask_logits=mask_in, multimask=False,
                                    device="cpu", disk_cache=False))
    assert np.array_equal(direct.masks, res.segment.masks)


def test_sam_mask_input_frame():
    """Logits over the image land in the top-left (ih/4, iw/4) of SAM's (s/4, s/4) input; the padding is
    background; the magnitude is clipped."""
    logits = np.full((352, 352), -5.0, np.float32)
    logits[:, 176:] = 50.0  # right half positive
    out = sam_mask_input(logits, (768, 1024), 1024)
    assert out.shape == (1, 256, 256)
    assert np.all(out[0, 192:] == -20.0)  # padding rows below the 768-high image
    assert np.all(out[0, :192, 140:] == 20.0) and np.all(out[0, :192, :120] == -5.0)


def test_empty_text_and_missing_sam_are_clear(clipseg_dir, image):
    eng = Engine()
    with pytest.raises(VipInputError, match="Type what to segment"):
        eng.run(VlsmSegmentRequest(image, " ", VlsmSpec("clipseg", source=str(clipseg_dir)), device="cpu"))
    with pytest.raises(VipInputError, match="needs a SAM"):
        eng.run(_request(image, clipseg_dir, refine_sam=True))


def test_candidate_commits_and_undoes_like_sams(clipseg_dir, image):
    from napari_vip.worker.segment_session import SegmentSession

    res = Engine().run(_request(image, clipseg_dir))
    if not res.vlsm_mask.any():
        pytest.skip("random weights gave an empty mask")
    session = SegmentSession()
    session.open_store(image.shape[:2])
    session.set_result(res.segment, (), res)
    ids = session.commit()
    assert ids == [1]
    rec = session.store.records[1]
    assert rec.source == "text" and rec.prompts["text"] == "one small pink polyp"
    assert rec.model["steps"][0]["family"] == "clipseg"
    assert session.undo() == 1


def test_cli_segment_with_vlsm(clipseg_dir, image, tmp_path, capsys):
    from PIL import Image

    from napari_vip.cli.main import main

    src = tmp_path / "img.png"
    Image.fromarray(image).save(src)
    out = tmp_path / "mask.png"
    rc = main(["segment", str(src), "--text", "one small pink polyp", "--vlsm", "clipseg", "--vlsm-checkpoint",
               str(clipseg_dir), "--out", str(out), "--device", "cpu", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["steps"][0]["family"] == "clipseg" and d["text"] == "one small pink polyp"
    want = load_vlsm(VlsmSpec("clipseg", source=str(clipseg_dir))).predict(image, "one small pink polyp").mask
    if want.any():
        assert np.array_equal(np.asarray(Image.open(out)) > 0, want)
