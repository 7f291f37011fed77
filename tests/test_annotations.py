"""Annotation store: new ids, commit never overwrites, undo, nD planes, save/load round trip, writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vip.core.annotations import AnnotationStore, sidecar_for
from napari_vip.core.errors import VipInputError
from napari_vip.io.annotations_writer import write_annotations


def disc(shape, center, radius):
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    return (rr - center[0]) ** 2 + (cc - center[1]) ** 2 <= radius ** 2


def test_commit_gives_new_ids_and_never_overwrites():
    store = AnnotationStore((40, 50))
    a = disc((40, 50), (15, 15), 8)
    b = disc((40, 50), (20, 22), 8)  # overlaps a
    assert store.commit(a, prompts={"boxes_xyxy": [[7, 7, 23, 23]]}, score=0.9) == 1
    assert store.commit(b) == 2
    assert (store.labels[a] == 1).all()  # a kept all its pixels
    assert store.records[2].area == int((b & ~a).sum())
    with pytest.raises(VipInputError, match="already belongs"):
        store.commit(a)
    with pytest.raises(VipInputError, match="empty"):
        store.commit(np.zeros((40, 50), bool))
    with pytest.raises(VipInputError, match="shape"):
        store.commit(np.ones((10, 10), bool))
    assert store.next_id() == 3


def test_undo_restores_exactly_and_ids_continue():
    store = AnnotationStore((30, 30))
    store.commit(disc((30, 30), (10, 10), 5))
    before = store.labels.copy()
    store.commit(disc((30, 30), (12, 12), 6))
    rec = store.undo()
    assert rec.id == 2 and 2 not in store.records
    np.testing.assert_array_equal(store.labels, before)
    assert store.undo().id == 1 and not store.labels.any()
    assert store.undo() is None
    assert store.commit(disc((30, 30), (5, 5), 3)) == 1


def test_nd_commit_goes_to_its_plane():
    store = AnnotationStore((4, 20, 20))
    m = disc((20, 20), (10, 10), 4)
    store.commit(m, plane=(2,))
    assert store.labels[2][m].tolist() == [1] * int(m.sum())
    assert not store.labels[[0, 1, 3]].any()
    assert store.records[1].plane == (2,)
    with pytest.raises(VipInputError, match="Plane index"):
        store.commit(m)  # no plane given for a 3D store


@pytest.mark.parametrize("suffix", [".png", ".tif", ".npy"])
def test_save_load_round_trip(tmp_path, suffix):
    store = AnnotationStore((30, 40))
    store.commit(disc((30, 40), (10, 10), 5), prompts={"boxes_xyxy": [[5, 5, 15, 15]], "points_xy": [[10, 10]],
                                                        "point_labels": [1]},
                 provenance={"model": {"arch": "vit_b"}, "weights_sha256": "abc", "untrained": False}, score=0.8)
    store.commit(disc((30, 40), (20, 30), 6), score=0.5)
    label_path, side = store.save(tmp_path / f"ann{suffix}")
    assert side == str(sidecar_for(label_path))
    loaded = AnnotationStore.load(label_path)
    np.testing.assert_array_equal(loaded.labels, store.labels)
    assert [r.to_dict() for r in loaded.records.values()] == [r.to_dict() for r in store.records.values()]
    assert loaded.records[1].prompts["point_labels"] == [1]
    assert loaded.next_id() == 3


def test_load_refuses_mismatched_or_foreign_sidecar(tmp_path):
    store = AnnotationStore((10, 10))
    store.commit(disc((10, 10), (5, 5), 2))
    path, side = store.save(tmp_path / "a.npy")
    from pathlib import Path

    side = Path(side)
    data = json.loads(side.read_text())
    data["shape"] = [11, 10]
    side.write_text(json.dumps(data))
    with pytest.raises(VipInputError, match="do not belong together"):
        AnnotationStore.load(path)
    side.write_text('{"format": "something else"}')
    with pytest.raises(VipInputError, match="not a napari-vip annotations sidecar"):
        AnnotationStore.load(path)
    side.write_text('{"format": \n oops')
    with pytest.raises(VipInputError, match="line 2"):
        AnnotationStore.load(path)


def test_unrecorded_labels_are_kept_as_unknown(tmp_path):
    labels = np.zeros((10, 10), np.uint8)
    labels[2:4, 2:4] = 5
    np.save(tmp_path / "hand.npy", labels)
    store = AnnotationStore.load(tmp_path / "hand.npy")
    assert store.records[5].source == "unknown" and store.records[5].area == 4
    assert store.next_id() == 6


def test_napari_writer_writes_labels_and_sidecar(tmp_path):
    store = AnnotationStore((12, 12))
    store.commit(disc((12, 12), (6, 6), 3), score=0.7)
    meta = {"vip_annotations": [r.to_dict() for r in store.records.values()]}
    paths = write_annotations(str(tmp_path / "w.tif"), store.labels, {"metadata": meta})
    assert paths[0].endswith("w.tif") and paths[1].endswith("w.json")
    back = AnnotationStore.load(paths[0])
    assert back.records[1].score == pytest.approx(0.7)
    np.testing.assert_array_equal(back.labels, store.labels)
