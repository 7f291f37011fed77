"""Labelled image sets for prompt learning: class folders, CSVs, and the report of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_vip.core.datasets import load_labelled, split_indices
from napari_vip.core.errors import VipInputError


def _png(path: Path, value: int = 100, shape=(12, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def test_folder_with_empty_class_and_unreadable_image(tmp_path):
    for i in range(3):
        _png(tmp_path / "a" / f"{i}.png")
        _png(tmp_path / "b" / f"{i}.png", 200)
    (tmp_path / "empty").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    data = load_labelled(tmp_path)
    assert data.classes == ["a", "b"]
    assert data.counts() == {"a": 3, "b": 3}
    assert data.report.empty_classes == ["empty"]
    assert [Path(p).name for p, _ in data.report.unreadable] == ["broken.png"]
    text = " ".join(data.report.lines())
    assert "empty" in text and "broken.png" in text
    assert data.read(0).shape == (12, 16, 3) and data.read(0).dtype == np.uint8
    assert data.read(0)[0, 0, 0] == 100  # 8-bit images are taken as stored, not re-windowed


def test_fewer_than_two_classes(tmp_path):
    _png(tmp_path / "a" / "0.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(VipInputError, match="at least 2") as exc:
        load_labelled(tmp_path)
    assert "'b'" in str(exc.value) or "b" in str(exc.value)
    with pytest.raises(VipInputError, match="does not exist"):
        load_labelled(tmp_path / "nope")


def test_csv_with_boxes_unknown_labels_and_missing_files(tmp_path):
    img = np.zeros((20, 30), np.uint8)
    img[5:10, 20:25] = 255  # bright block at rows 5..9, cols 20..24
    Image.fromarray(img).save(tmp_path / "x.png")
    _png(tmp_path / "y.png", 50)
    (tmp_path / "list.csv").write_text(
        "path,label,x0,y0,x1,y1\n"
        "x.png,lesion,20,5,24,9\n"
        "y.png,normal\n"
        "gone.png,normal\n"
        "y.png,unknown-thing\n"
        "y.png\n")
    data = load_labelled(tmp_path / "list.csv", classes=["lesion", "normal"])
    assert data.classes == ["lesion", "normal"] and len(data) == 2
    crop = data.read(0)
    assert crop.shape == (5, 5, 3) and (crop == 255).all()  # the box (x, y) picked the bright block
    assert data.report.missing_files[0].endswith("gone.png")
    assert data.report.unknown_labels == [(5, "unknown-thing")]
    assert data.report.bad_rows[0][0] == 6
    with pytest.raises(VipInputError, match="at least 2"):
        (tmp_path / "one.csv").write_text("y.png,normal\ngone.png,other\n")
        load_labelled(tmp_path / "one.csv")


def test_split_is_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 5)
    tr, va = split_indices(labels, 0.2, seed=4)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(15))
    assert (labels[va] == 0).sum() == 2 and (labels[va] == 1).sum() == 1
    assert np.array_equal(va, split_indices(labels, 0.2, seed=4)[1])
    assert not np.array_equal(va, split_indices(labels, 0.2, seed=5)[1])
