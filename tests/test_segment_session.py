"""The segmentation session without a viewer: requests from prompts, candidates, commit and undo per plane and
per object, whole-volume commits, and never overwriting another object's voxels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.models.sam import SamSpec
from napari_vip.worker.protocol import Provenance
from napari_vip.worker.segment import SegmentResult
from napari_vip.worker.segment_session import SegmentSession

SPEC = SamSpec("vit_b", untrained=True)


def disc(hw, center_rc, radius):
    rr, cc = np.ogrid[:hw[0], :hw[1]]
    return (rr - center_rc[0]) ** 2 + (cc - center_rc[1]) ** 2 <= radius ** 2


def result(*objects, boxes=(), points=((20.0, 10.0),), labels=(1,)):
    """A SegmentResult whose objects each have the given candidates (lists of (H, W) bool masks)."""
    masks = np.stack([np.stack(cands) for cands in objects])
    b, c, h, w = masks.shape
    scores = np.linspace(0.9, 0.5, b * c, dtype=np.float32).reshape(b, c)
    logits = np.arange(b * c * 16, dtype=np.float32).reshape(b, c, 4, 4)
    return SegmentResult(masks, scores, logits, list(boxes), np.asarray(points, float).reshape(-1, 2),
                         np.asarray(labels, np.int64), "computed", {"decode": 1.0},
                         Provenance("test", {"arch": "vit_b"}, untrained=True))


def test_request_is_checked_and_refines_from_the_shown_candidate():
    session = SegmentSession()
    rgb = np.zeros((32, 40, 3), np.uint8)
    with pytest.raises(VipInputError):
        session.request(rgb, SPEC, [], [(5, 5)], [0])  # only a negative click: nothing to segment
    req = session.request(rgb, SPEC, [(2, 3, 20, 25)], [], [], multimask=False, device="cpu")
    assert req.boxes_xyxy == [(2, 3, 20, 25)] and req.mask_logits is None and req.multimask is False
    a, b = disc((32, 40), (10, 10), 4), disc((32, 40), (20, 20), 4)
    session.set_result(result([a, b]))
    assert session.next_candidate() == 1
    req = session.request(rgb, SPEC, [], [(10, 10)], [1], refine=True)
    np.testing.assert_array_equal(req.mask_logits, session.result.low_res_logits[0, 1][None])
    assert session.request(rgb, SPEC, [], [(10, 10)], [1], refine=False).mask_logits is None
    assert session.next_candidate() == 0  # cycles


def test_commit_on_a_slice_paints_only_that_slice_and_undo_restores():
    session = SegmentSession()
    session.open_store((3, 32, 40))
    a = disc((32, 40), (12, 12), 6)
    session.set_result(result([a, ~a], boxes=[(6, 6, 18, 18)]), plane=(1,))
    ids = session.commit()
    assert ids == [1] and session.result is None
    labels = session.store.labels
    assert (labels[1] == 1).sum() == a.sum() and not labels[0].any() and not labels[2].any()
    rec = session.records_metadata()[0]
    assert rec["plane"] == [1] and rec["prompts"]["boxes_xyxy"] == [[6, 6, 18, 18]] and rec["area"] == a.sum()
    assert session.undo() == 1 and not session.store.labels.any() and session.undo() is None


def test_objects_never_overwrite_each_other_and_get_their_own_ids():
    session = SegmentSession()
    session.open_store((32, 40))
    first, second = disc((32, 40), (12, 12), 6), disc((32, 40), (12, 16), 6)  # overlapping discs
    session.set_result(result([first]))
    session.commit()
    session.set_result(result([second]))
    assert session.commit() == [2]
    labels = session.store.labels
    assert (labels == 1).sum() == first.sum()  # the first object keeps every voxel
    assert ((labels == 2) == (second & ~first)).all()
    session.set_result(result([first]))  # wholly on object 1: nothing new
    assert session.commit() == [] and "already belongs" in session.notes[0]


def test_two_boxes_commit_as_two_objects_and_candidate_labels_show_both():
    session = SegmentSession()
    session.open_store((32, 40))
    a, b = disc((32, 40), (8, 8), 3), disc((32, 40), (24, 30), 3)
    session.set_result(result([a], [b]))
    shown = session.candidate_labels()
    assert set(np.unique(shown)) == {0, 1, 2} and (shown == 2).sum() == b.sum()
    assert session.commit() == [1, 2]


def test_a_whole_volume_commit_is_one_object_and_one_undo():
    session = SegmentSession()
    session.open_store((4, 16, 16))
    session.set_result(result([disc((16, 16), (8, 8), 3)]), plane=(2,))
    session.commit()
    mask = np.zeros((4, 16, 16), bool)
    mask[1:4, 6:11, 6:11] = True
    new = session.commit_volume(mask, prompts={"slice": 1}, source="propagation")
    labels = session.store.labels
    assert new == 2 and set(np.unique(labels[1])) == {0, 2}
    assert (labels[2][disc((16, 16), (8, 8), 3)] == 1).all()  # object 1's voxels stay
    rec = session.records_metadata()[1]
    assert rec["plane"] == [] and rec["prompts"]["planes"] == [1, 3] and rec["source"] == "propagation"
    assert session.undo() == 2 and set(np.unique(session.store.labels)) == {0, 1}
    with pytest.raises(VipInputError, match="shape"):
        session.commit_volume(np.ones((2, 16, 16), bool))


def test_a_correction_replaces_the_object_only_on_the_planes_it_reached_and_undo_restores():
    session = SegmentSession()
    session.open_store((5, 12, 12))
    other = np.zeros((5, 12, 12), bool)
    other[3, 0:3, 0:3] = True
    session.commit_volume(other)  # object 1, another object
    first = np.zeros((5, 12, 12), bool)
    first[0:5, 2:8, 2:8] = True
    obj = session.commit_volume(first, prompts={"prompts": [{"slice": 2}]})  # object 2, on every plane
    before_labels, before_record = session.store.labels.copy(), session.records_metadata()[1]
    fixed = np.zeros((5, 12, 12), bool)
    fixed[3:5, 0:5, 0:5] = True  # planes 3 and 4 corrected, plane 2 (not reached) says nothing
    fixed[2] = True
    changed = session.revise_volume(obj, fixed, planes=[3, 4], prompts={"prompts": [{"slice": 2}, {"slice": 4}]})
    labels = session.store.labels
    np.testing.assert_array_equal(labels[:3], before_labels[:3])  # planes not reached keep the object as it was
    np.testing.assert_array_equal(labels[4] == obj, fixed[4])
    np.testing.assert_array_equal(labels[3, 0:3, 0:3], 1)  # never another object's voxels
    np.testing.assert_array_equal(labels[3] == obj, fixed[3] & ~other[3])
    want_changed = int(((before_labels[3:] == obj) != (labels[3:] == obj)).sum())
    assert changed == want_changed > 0
    rec = session.records_metadata()[1]
    assert rec["id"] == obj and rec["area"] == int((labels == obj).sum()) and rec["source"] == "correction"
    assert rec["prompts"]["planes"] == [0, 4] and rec["prompts"]["prompts"][-1] == {"slice": 4}
    assert session.undo() == obj
    np.testing.assert_array_equal(session.store.labels, before_labels)
    assert session.records_metadata()[1] == before_record
    with pytest.raises(VipInputError, match="Object 9 is not among"):
        session.revise_volume(9, fixed, planes=[1])


def test_commit_without_a_candidate_or_store_says_what_to_do(tmp_path):
    session = SegmentSession()
    with pytest.raises(VipInputError, match="Nothing to commit"):
        session.commit()
    session.set_result(result([disc((8, 8), (4, 4), 2)]))
    with pytest.raises(VipInputError, match="open an image"):
        session.commit()
    with pytest.raises(VipInputError, match="No annotations yet"):
        session.save(tmp_path / "a.tif")


def test_save_and_load_round_trip_and_a_wrong_shape_keeps_the_store(tmp_path):
    session = SegmentSession()
    session.open_store((20, 24))
    session.set_result(result([disc((20, 24), (10, 12), 4)]))
    session.commit()
    label_path, sidecar = session.save(tmp_path / "ann.tif")
    other = SegmentSession()
    other.load(label_path, (20, 24))
    np.testing.assert_array_equal(other.store.labels, session.store.labels)
    assert other.records_metadata()[0]["id"] == 1
    kept = other.store
    with pytest.raises(VipInputError, match="have shape"):
        other.load(label_path, (21, 24))
    assert other.store is kept
    reopened = SegmentSession()
    reopened.open_store((20, 24), session.store.labels, session.records_metadata())
    assert list(reopened.store.records) == [1] and reopened.store.next_id() == 2
