"""Volume exports: DICOM-SEG on a synthetic CT series (round trip with highdicom/pydicom) and a 3D NIfTI label map
with the series' affine."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.io.dicom_seg import read_dicom_seg, write_dicom_seg
from napari_vip.io.dicom_series import read_dicom_folder
from napari_vip.io.labels_writers import write_labels_nifti


@pytest.fixture
def ct_series(tmp_path):
    """A 4-slice CT series made from pydicom's CT_small.dcm, written in shuffled file order, 2.5 mm apart."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series = generate_uid()
    folder = tmp_path / "series"
    folder.mkdir()
    z0 = float(base.ImagePositionPatient[2])
    for n, k in enumerate((2, 0, 3, 1)):
        ds = base.copy()
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [base.ImagePositionPatient[0], base.ImagePositionPatient[1], z0 + 2.5 * k]
        arr = base.pixel_array.copy()
        arr[:8, :8] = k  # each slice its own pixels
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"f{n}.dcm")
    return folder, series


def test_dicom_seg_round_trip(ct_series, tmp_path):
    import pydicom

    folder, series = ct_series
    (data, kwargs, _), = read_dicom_folder(folder)
    files = kwargs["metadata"]["vip_files"]
    assert data.shape == (4, 128, 128)
    labels = np.zeros(data.shape, np.uint16)
    labels[1, 40:70, 50:90] = 1
    labels[2, 45:60, 55:80] = 1
    labels[2, 90:110, 10:30] = 2
    labels[3, 5:9, 100:120] = 2
    out = write_dicom_seg(tmp_path / "seg.dcm", labels, files, names={1: "liver lesion", 2: "kidney"},
                          provenance={"prompts": [{"slice": 1, "box_xyxy": [50, 40, 89, 69]}]})
    back, names = read_dicom_seg(out[0], files)
    assert names == {1: "liver lesion", 2: "kidney"}
    assert np.array_equal(back, labels)
    seg = pydicom.dcmread(out[0])
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series
    assert seg.FrameOfReferenceUID == pydicom.dcmread(files[0]).FrameOfReferenceUID
    # frames land on the source instances they were drawn on
    by_uid = {str(pydicom.dcmread(f).SOPInstanceUID): z for z, f in enumerate(files)}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert by_uid[uid] in (1, 2, 3)
    params = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "box_xyxy" in params


def test_dicom_seg_refuses_mismatch(ct_series, tmp_path):
    folder, _ = ct_series
    (_, kwargs, _), = read_dicom_folder(folder)
    with pytest.raises(VipInputError, match="4 files"):
        write_dicom_seg(tmp_path / "x.dcm", np.ones((3, 128, 128), np.uint8), kwargs["metadata"]["vip_files"])
    with pytest.raises(VipInputError, match="empty"):
        write_dicom_seg(tmp_path / "x.dcm", np.zeros((4, 128, 128), np.uint8), kwargs["metadata"]["vip_files"])


def test_nifti_labels_keep_series_affine(ct_series, tmp_path):
    import nibabel as nib

    folder, _ = ct_series
    (data, kwargs, _), = read_dicom_folder(folder)
    labels = np.zeros(data.shape, np.uint8)
    labels[1:3, 40:70, 50:90] = 3
    out = write_labels_nifti(tmp_path / "mask.nii.gz", labels, {"metadata": kwargs["metadata"]})
    img = nib.load(out[0])
    assert np.array_equal(np.asarray(img.dataobj), labels)
    np.testing.assert_allclose(img.affine, kwargs["metadata"]["vip_affine"], atol=1e-4)
    assert abs(np.linalg.norm(img.affine[:3, 0]) - 2.5) < 1e-4  # slice spacing along the first axis
