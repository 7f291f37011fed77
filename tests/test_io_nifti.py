"""NIfTI reader: RAS+ canonical orientation, voxel sizes as scale, affine in metadata."""

import nibabel as nib
import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.io.nifti import get_nifti_reader, read_nifti


def _ras_of(affine, ijk):
    return (affine @ np.append(ijk, 1.0))[:3]


def test_lps_like_file_is_reoriented_to_ras(tmp_path):
    # stored axes: i -> Left (x decreasing), j -> Superior, k -> Posterior (PIR-like permutation with flips)
    affine = np.array([[-2.0, 0, 0, 50], [0, 0, -3.0, 20], [0, 1.5, 0, -10], [0, 0, 0, 1]])
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    assert get_nifti_reader(str(path)) is read_nifti
    ((out, kwargs, kind),) = read_nifti(path)
    assert kind == "image"
    meta = kwargs["metadata"]
    assert meta["vip_orientation"] == "RAS"
    assert nib.aff2axcodes(meta["vip_affine"]) == ("R", "A", "S")
    # axis 0 <- stored i (flipped), axis 1 <- stored k (flipped), axis 2 <- stored j
    assert out.shape == (4, 6, 5) and out.dtype == np.int16
    expected = data[::-1, :, :][:, :, ::-1].transpose(0, 2, 1)
    np.testing.assert_array_equal(out, expected)
    assert kwargs["scale"] == pytest.approx((2.0, 3.0, 1.5))
    # every voxel keeps its physical position
    for idx in [(0, 0, 0), (3, 5, 4), (1, 2, 3)]:
        src = (3 - idx[0], idx[2], 5 - idx[1])
        np.testing.assert_allclose(_ras_of(meta["vip_affine"], idx), _ras_of(affine, src))
    assert kwargs["name"] == "vol"


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
    assert out.shape == (2, 3, 4, 5) and kwargs["scale"] == pytest.approx((1.0, 1.0, 2.0, 3.0))


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
