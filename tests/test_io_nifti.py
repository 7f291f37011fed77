"""NIfTI reader: slices first as an axial viewer shows them, voxel sizes as scale, the affine in metadata, and
labels written back landing on the source voxels."""

import nibabel as nib
import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.io.labels_writers import write_labels_nifti
from napari_vip.io.nifti import get_nifti_reader, read_nifti


def _ras_of(affine, ijk):
    return (affine @ np.append(ijk, 1.0))[:3]


def test_volume_is_presented_slices_first_as_an_axial_viewer_shows_it(tmp_path):
    # stored axes: i -> Left (x decreasing), j -> Superior, k -> Posterior (PIR-like permutation with flips)
    affine = np.array([[-2.0, 0, 0, 50], [0, 0, -3.0, 20], [0, 1.5, 0, -10], [0, 0, 0, 1]])
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    assert get_nifti_reader(str(path)) is read_nifti
    ((out, kwargs, kind),) = read_nifti(path)
    assert kind == "image"
    meta = kwargs["metadata"]
    # axis 0 inferior -> superior (napari's slider), rows anterior -> posterior, columns right -> left
    assert meta["vip_orientation"] == "SPL" and meta["vip_axes"] == "SPL"
    assert nib.aff2axcodes(meta["vip_affine"]) == ("S", "P", "L")
    assert out.shape == (5, 6, 4) and out.dtype == np.int16
    assert kwargs["scale"] == pytest.approx((1.5, 3.0, 2.0))
    # every voxel keeps its physical position: find each presented value's stored voxel
    for idx in np.ndindex(out.shape):
        src = np.unravel_index(int(out[idx]), data.shape)
        np.testing.assert_allclose(_ras_of(meta["vip_affine"], idx), _ras_of(affine, src))
    # the patient's right on the viewer's left: column 0 is further right (larger RAS x) than the last column
    assert _ras_of(meta["vip_affine"], (0, 0, 0))[0] > _ras_of(meta["vip_affine"], (0, 0, 3))[0]
    # anterior up: row 0 is further anterior (larger RAS y) than the last row
    assert _ras_of(meta["vip_affine"], (0, 0, 0))[1] > _ras_of(meta["vip_affine"], (0, 5, 0))[1]
    assert kwargs["name"] == "vol"


def _oblique_affine():
    """Rotations of 25 degrees about z and 10 about x, stored axes permuted (A, R, S) and flipped, 0.8/1.1/2.5 mm."""
    a, b = np.radians(25), np.radians(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    perm = np.array([[0, -1.0, 0], [1.0, 0, 0], [0, 0, 1.0]]) @ np.diag([0.8, 1.1, 2.5])
    out = np.eye(4)
    out[:3, :3] = rz @ rx @ perm
    out[:3, 3] = (-31.5, 12.25, 70.0)
    return out


def test_labels_written_back_land_on_the_source_voxels_of_an_oblique_volume(tmp_path):
    affine = _oblique_affine()
    data = np.arange(7 * 9 * 5, dtype=np.int32).reshape(7, 9, 5)  # every voxel its own value
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    ((out, kwargs, _),) = read_nifti(path)
    assert out.shape == (5, 7, 9)  # slices first
    meta = kwargs["metadata"]
    labels = ((out % 7 == 0) * 3 + (out % 11 == 0)).astype(np.uint8)  # drawn on the presented array
    (written,) = write_labels_nifti(str(tmp_path / "labels.nii.gz"), labels, {"metadata": meta})
    saved = nib.load(written)
    lab = np.asanyarray(saved.dataobj)
    # written on the source's own grid: its shape, axis order and affine
    assert lab.shape == data.shape
    np.testing.assert_allclose(saved.affine, affine, atol=1e-6)
    # map every written voxel into the source image's voxel grid: integer indices, the label drawn there
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in lab.shape], indexing="ij"), -1).reshape(-1, 3)
    src = (np.linalg.inv(affine) @ saved.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].T
    np.testing.assert_allclose(src, np.round(src), atol=1e-6)
    src = np.round(src).astype(int)
    values = data[tuple(src.T)]
    np.testing.assert_array_equal(lab[tuple(idx.T)], ((values % 7 == 0) * 3 + (values % 11 == 0)))
    # and the labels file opens as the same presented array
    ((again, _, _),) = read_nifti(written)
    np.testing.assert_array_equal(again, labels)


def test_2d_image_gets_the_in_plane_flips(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)  # (x, y)
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.25, 1.0, 1.0])), str(path))
    ((out, kwargs, _),) = read_nifti(path)
    np.testing.assert_array_equal(out, data[::-1, ::-1].T)  # rows: anterior first; columns: right first
    assert kwargs["scale"] == pytest.approx((0.25, 0.5))
    aff = kwargs["metadata"]["vip_affine"]
    for i, j in np.ndindex(out.shape):
        src = np.unravel_index(int(out[i, j]), data.shape)
        np.testing.assert_allclose(_ras_of(aff, (i, j, 0)), _ras_of(np.diag([0.5, 0.25, 1.0, 1.0]), (*src, 0)))
    (written,) = write_labels_nifti(str(tmp_path / "flat_labels.nii"), (out % 3 == 0).astype(np.uint8),
                                    {"metadata": kwargs["metadata"]})
    np.testing.assert_array_equal(np.asanyarray(nib.load(written).dataobj), (data % 3 == 0).astype(np.uint8))


def test_scaling_and_cal_window(tmp_path):
    img = nib.Nifti1Image(np.ones((3, 3, 3), dtype=np.int16), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    img.header["cal_min"], img.header["cal_max"] = 0, 20
    path = tmp_path / "scaled.nii"
    nib.save(img, str(path))
    ((out, kwargs, _),) = read_nifti(path)
    np.testing.assert_allclose(out, 10.5)
    assert kwargs["contrast_limits"] == (0.0, 20.0)
    assert kwargs["metadata"]["vip_window"] == (0.0, 20.0)


def test_4d_puts_time_first(tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 4, 5, 2), dtype=np.float32), np.diag([1.0, 2.0, 3.0, 1.0]))
    path = tmp_path / "t.nii.gz"
    nib.save(img, str(path))
    ((out, kwargs, _),) = read_nifti(path)
    assert out.shape == (2, 5, 4, 3) and kwargs["scale"] == pytest.approx((1.0, 3.0, 2.0, 1.0))


def test_bad_nifti(tmp_path):
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"definitely not nifti" * 3)
    with pytest.raises(VipInputError, match="bad.nii could not be read as NIfTI"):
        read_nifti(bad)
    good = tmp_path / "good.nii"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), dtype=np.float32), np.eye(4)), str(good))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(VipInputError, match="cut.nii"):
        read_nifti(cut)
    assert get_nifti_reader(str(tmp_path / "x.png")) is None
