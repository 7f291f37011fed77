"""Labels drawn on an oblique (non-axis-aligned) DICOM series land on the source voxels, written as DICOM-SEG or
NIfTI: every labelled voxel's patient position equals the position DICOM gives the source pixel."""

from __future__ import annotations

import numpy as np
import pytest

from napari_vip.io.dicom_seg import read_dicom_seg, write_dicom_seg
from napari_vip.io.dicom_series import read_dicom_folder
from napari_vip.io.labels_writers import write_labels_nifti


def _oblique_series(folder, n=4, degrees=20.0):
    """pydicom's CT_small rotated ``degrees`` about the patient's z and 10 about x; slices 3 mm apart along the
    normal, written in shuffled file order; slice k has its own corner pixels."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    a, b = np.radians(degrees), np.radians(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    row_dir, col_dir = rz @ rx @ [1.0, 0, 0], rz @ rx @ [0, 1.0, 0]
    normal = np.cross(row_dir, col_dir)
    origin = np.array([-40.0, 25.0, 100.0])
    series, frame = generate_uid(), generate_uid()
    folder.mkdir()
    for n_file, k in enumerate((2, 0, 3, 1)[:n]):
        ds = base.copy()
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [float(v) for v in origin + 3.0 * k * normal]
        arr = base.pixel_array.copy()
        arr[:8, :8] = k
        ds.PixelData = arr.tobytes()
        ds.save_as(folder / f"f{n_file}.dcm")
    return folder


def _pixel_lps(ds, i, j):
    """DICOM's patient position (LPS mm) of pixel row ``i``, column ``j`` of one instance (C.7.6.2.1.1)."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)  # row spacing, column spacing
    return np.asarray(ds.ImagePositionPatient, float) + iop[:3] * dc * j + iop[3:] * dr * i


def _labels(shape):
    labels = np.zeros(shape, np.uint16)
    labels[1, 40:70, 50:90] = 1
    labels[2, 45:60, 55:80] = 1
    labels[3, 90:110, 10:30] = 2
    return labels


def test_dicom_seg_of_an_oblique_series_lands_on_the_source_pixels(tmp_path):
    import pydicom

    folder = _oblique_series(tmp_path / "series")
    ((data, kwargs, _),) = read_dicom_folder(folder)
    files = kwargs["metadata"]["vip_files"]
    assert data.shape == (4, 128, 128)
    labels = _labels(data.shape)
    (out,) = write_dicom_seg(tmp_path / "seg.dcm", labels, files, names={1: "a", 2: "b"})
    back, _ = read_dicom_seg(out, files)
    np.testing.assert_array_equal(back, labels)
    seg = pydicom.dcmread(out)
    sources = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in files}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, [float(v) for v in sources[uid].ImagePositionPatient], atol=1e-4)


def test_nifti_labels_of_an_oblique_series_land_on_the_source_pixels(tmp_path):
    import nibabel as nib
    import pydicom

    folder = _oblique_series(tmp_path / "series")
    ((data, kwargs, _),) = read_dicom_folder(folder)
    files = kwargs["metadata"]["vip_files"]
    labels = _labels(data.shape)
    (out,) = write_labels_nifti(str(tmp_path / "labels.nii.gz"), labels, {"metadata": kwargs["metadata"]})
    saved = nib.load(out)
    stored = np.asanyarray(saved.dataobj)
    for k, i, j in np.argwhere(stored)[::97]:
        ras = saved.affine @ [k, i, j, 1]
        lps = _pixel_lps(pydicom.dcmread(files[k]), i, j)
        np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-3)
        assert stored[k, i, j] == labels[k, i, j]


@pytest.mark.parametrize("degrees", [0.0, 35.0])
def test_nifti_volume_labels_round_trip_through_an_oblique_file(tmp_path, degrees):
    """A NIfTI written from the oblique series (its affine rotated), read back slices first, labelled, written:
    the labels file has the NIfTI's own grid and the labels sit on the voxels they were drawn on."""
    import nibabel as nib

    from napari_vip.io.nifti import read_nifti

    a = np.radians(degrees)
    affine = np.array([[0.7 * np.cos(a), -0.9 * np.sin(a), 0, -20], [0.7 * np.sin(a), 0.9 * np.cos(a), 0, 15],
                       [0, 0, 2.0, 30], [0, 0, 0, 1]])
    volume = np.arange(16 * 12 * 5, dtype=np.int32).reshape(16, 12, 5)
    nib.save(nib.Nifti1Image(volume, affine), str(tmp_path / "v.nii.gz"))
    ((shown, kwargs, _),) = read_nifti(tmp_path / "v.nii.gz")
    assert shown.shape == (5, 12, 16)
    labels = (shown % 5 == 1).astype(np.uint8)
    (out,) = write_labels_nifti(str(tmp_path / "l.nii.gz"), labels, {"metadata": kwargs["metadata"]})
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), (volume % 5 == 1).astype(np.uint8))
