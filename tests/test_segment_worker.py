"""Segment requests and the CLI twin: prompt checks, candidates by score, batch boxes, JSON and files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vip.cli.main import main
from napari_vip.core.errors import VipInputError
from napari_vip.models.sam import SamSpec
from napari_vip.worker.engine import Engine
from napari_vip.worker.segment import SegmentRequest, check_prompts


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))


def test_box_partly_outside_is_clipped_with_a_note():
    boxes, _, _, notes = check_prompts([(-10, 5, 30, 200)], None, None, (100, 50))
    assert boxes == [(0.0, 5.0, 30.0, 99.0)]
    assert "clipped" in notes[0]


@pytest.mark.parametrize("boxes, pts, labels, match", [
    ([(10, 10, 10, 40)], None, None, "zero area"),
    ([(200, 200, 300, 300)], None, None, "outside"),
    ([], [(5, 5)], [0], "Only negative points"),
    ([], [], [], "Nothing to segment"),
    ([], [(5, 500)], [1], "outside the 50x100"),
    ([(0, 0, 5, 5), (6, 6, 9, 9)], [(5, 5)], [1], "clicks refine one object"),
    ([], [(5, 5)], [2], "1 \\(positive\\) or 0"),
])
def test_bad_prompts_are_refused(boxes, pts, labels, match):
    with pytest.raises(VipInputError, match=match):
        check_prompts(boxes, pts, labels, (100, 50))


def test_negative_point_with_a_box_is_fine():
    _, pts, labels, _ = check_prompts([(1, 1, 20, 20)], [(5, 5)], [0], (100, 50))
    assert labels.tolist() == [0] and pts.shape == (1, 2)


def test_candidates_sorted_by_score_and_batch(tiny_sam_checkpoint):
    arch, path = tiny_sam_checkpoint
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:30, 20:50] = 220
    res = Engine().run(SegmentRequest(img, SamSpec(arch, checkpoint=path), [(18, 8, 52, 32), (0, 0, 20, 20)]))
    assert res.masks.shape == (2, 3, 48, 64)
    assert np.all(np.diff(res.scores, axis=1) <= 0)  # best first
    d = res.to_dict()
    assert d["provenance"]["weights_sha256"] and d["untrained"] is False
    assert d["prompts"]["boxes_xyxy"][1] == [0.0, 0.0, 20.0, 20.0]


def test_cli_writes_label_image_and_sidecar(tiny_sam_checkpoint, tmp_path, capsys):
    from PIL import Image

    arch, path = tiny_sam_checkpoint
    img = np.zeros((48, 64), np.uint8)
    img[10:30, 20:50] = 220
    Image.fromarray(img).save(tmp_path / "in.png")
    out = tmp_path / "out" / "mask.png"
    rc = main(["segment", str(tmp_path / "in.png"), "--box", "18", "8", "70", "32", "--point", "30", "20",
               "--positive", "--point", "2", "40", "--negative", "--sam-arch", arch, "--sam-checkpoint", path,
               "--out", str(out), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["prompts"]["boxes_xyxy"] == [[18.0, 8.0, 63.0, 32.0]]  # clipped to the 64-wide image
    assert d["prompts"]["point_labels"] == [1, 0]
    assert any("clipped" in n for n in d["notes"])
    labels = np.asarray(Image.open(out))
    side = json.loads((tmp_path / "out" / "mask.json").read_text())
    assert labels.shape == (48, 64) and set(np.unique(labels)) <= {0, 1}
    assert side["objects"][0]["prompts"]["point_labels"] == [1, 0]
    assert side["objects"][0]["area"] == int((labels == 1).sum())
    assert side["objects"][0]["model"]["weights_sha256"] == d["provenance"]["weights_sha256"]


def test_cli_bad_input_exit_code_and_message(tiny_sam_arch, tmp_path, capsys):
    np.save(tmp_path / "in.npy", np.zeros((20, 20), np.float32))
    rc = main(["segment", str(tmp_path / "in.npy"), "--point", "3", "3", "--negative", "--sam-arch", tiny_sam_arch,
               "--untrained"])
    assert rc == 2
    assert "Only negative points" in capsys.readouterr().err
    rc = main(["segment", str(tmp_path / "in.npy"), "--box", "1", "1", "5", "5"])
    assert rc == 2
    assert "--untrained" in capsys.readouterr().err
