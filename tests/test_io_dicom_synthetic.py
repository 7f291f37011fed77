"""DICOM series and bad input, on small files the tests write themselves."""

import random

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from napari_vip.core.errors import VipInputError
from napari_vip.io.dicom_reader import get_dicom_reader, read_dicom

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def write_slice(path, stored, *, position=(0.0, 0.0, 0.0), iop=AXIAL, instance=1, series=None,
                photometric="MONOCHROME2", window=(40, 400), pixels=True):
    """A minimal CT image file: int16 ``stored`` values, HU = stored - 1024, spacing 0.5 x 0.7 mm."""
    stored = np.asarray(stored, dtype=np.int16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series or "1.2.3.4"
    ds.PatientName = "Secret^Person"
    ds.PatientID = "ID-12345"
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.StudyDate = "20240102"
    ds.SeriesDescription = "synthetic chest"
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = [0.5, 0.7]
    if iop is not None:
        ds.ImageOrientationPatient = list(iop)
    if position is not None:
        ds.ImagePositionPatient = list(position)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if pixels:
        ds.PixelData = stored.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _series(folder, n=6, iop=AXIAL, seed=0, with_position=True):
    """Write ``n`` slices in shuffled file order; slice k has stored value 1000 + k."""
    folder.mkdir(exist_ok=True)
    normal = np.cross(iop[:3], iop[3:])
    order = list(range(n))
    random.Random(seed).shuffle(order)
    for file_no, k in enumerate(order):
        pos = tuple(10.0 + 2.5 * k * normal) if with_position else None
        write_slice(folder / f"IM{file_no:04d}", np.full((8, 6), 1000 + k), position=pos, iop=iop,
                    instance=k + 1)
    return folder


@pytest.mark.parametrize("iop", [AXIAL, SAGITTAL], ids=["axial", "sagittal"])
def test_shuffled_series_is_sorted_along_the_normal(tmp_path, iop):
    folder = _series(tmp_path / "series", iop=iop)
    ((data, kwargs, kind),) = read_dicom(str(folder))
    assert kind == "image" and data.shape == (6, 8, 6) and data.dtype == np.int16
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(6) + 1000 - 1024)  # HU, slice order restored
    assert kwargs["scale"] == pytest.approx((2.5, 0.5, 0.7))
    assert kwargs["contrast_limits"] == (-160.0, 239.0)  # center 40, width 400 (DICOM LINEAR)
    meta = kwargs["metadata"]
    assert meta["vip_window"] == (-160.0, 239.0) and meta["vip_invert"] is False
    assert meta["vip_dicom"]["BodyPartExamined"] == "CHEST"
    assert "Secret" not in repr(meta) and "ID-12345" not in repr(meta)
    # affine: voxel (k, i, j) -> RAS mm of that voxel
    aff = meta["vip_affine"]
    normal = np.cross(iop[:3], iop[3:])
    k, i, j = 3, 5, 2
    lps = np.array([10.0] * 3) + 2.5 * k * normal + i * 0.5 * np.array(iop[3:]) + j * 0.7 * np.array(iop[:3])
    np.testing.assert_allclose(aff @ [k, i, j, 1], [-lps[0], -lps[1], lps[2], 1])


def test_instance_number_fallback_and_file_list(tmp_path):
    folder = _series(tmp_path / "nopos", with_position=False, seed=3)
    ((data, kwargs, _),) = read_dicom(str(folder))
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(6) + 1000 - 1024)
    assert any("InstanceNumber" in note for note in kwargs["metadata"]["vip_notes"])
    files = sorted(str(p) for p in folder.iterdir())
    reader = get_dicom_reader(files)
    ((data2, _, _),) = reader(files)
    np.testing.assert_array_equal(data2, data)


def test_two_series_in_one_folder_give_two_layers(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    for k in range(3):
        write_slice(folder / f"a{k}.dcm", np.full((4, 4), k), position=(0, 0, k), series="1.1", instance=k)
        write_slice(folder / f"b{k}.dcm", np.full((5, 5), k), position=(0, 0, k), series="1.2", instance=k)
    layers = read_dicom(folder)
    assert sorted(d.shape for d, _, _ in layers) == [(3, 4, 4), (3, 5, 5)]


def test_monochrome1_synthetic(tmp_path):
    path = write_slice(tmp_path / "cr.dcm", np.arange(16).reshape(4, 4), photometric="MONOCHROME1")
    ((data, kwargs, _),) = read_dicom(path)
    assert kwargs["colormap"] == "gray_r" and kwargs["metadata"]["vip_invert"] is True
    np.testing.assert_array_equal(data, np.arange(16).reshape(4, 4) - 1024)


def test_no_window_uses_data_range(tmp_path):
    path = write_slice(tmp_path / "nowin.dcm", np.arange(16).reshape(4, 4), window=None)
    ((_, kwargs, _),) = read_dicom(path)
    assert kwargs["contrast_limits"] == (-1024.0, -1009.0)
    assert kwargs["metadata"]["vip_window_info"]["source"].startswith("data range")


# ------------------------------------------------------------------------------------ bad input
def test_non_dicom_file_named_dcm(tmp_path):
    path = tmp_path / "photo.dcm"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert get_dicom_reader(str(path)) is read_dicom  # claimed, so the user gets a message
    with pytest.raises(VipInputError, match="photo.dcm is not a DICOM file"):
        read_dicom(str(path))


def test_mixed_sizes_names_the_odd_file(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k in range(3):
        write_slice(folder / f"ok{k}.dcm", np.zeros((8, 8)), position=(0, 0, k), instance=k)
    write_slice(folder / "odd.dcm", np.zeros((6, 6)), position=(0, 0, 5), instance=5)
    with pytest.raises(VipInputError, match="mixes image sizes") as err:
        read_dicom(folder)
    assert "3 file(s) 8x8" in str(err.value) and "1 file(s) 6x6 pixels (e.g. odd.dcm)" in str(err.value)


def test_mixed_orientations_says_which(tmp_path):
    folder = tmp_path / "orient"
    folder.mkdir()
    for k in range(3):
        write_slice(folder / f"ax{k}.dcm", np.zeros((8, 8)), position=(0, 0, k), instance=k)
    write_slice(folder / "scout.dcm", np.zeros((8, 8)), iop=CORONAL, instance=9)
    with pytest.raises(VipInputError, match="mixes slice orientations") as err:
        read_dicom(folder)
    assert "axial" in str(err.value) and "coronal" in str(err.value) and "scout.dcm" in str(err.value)


def test_missing_pixel_data(tmp_path):
    path = write_slice(tmp_path / "nopix.dcm", np.zeros((4, 4)), pixels=False)
    with pytest.raises(VipInputError, match="nopix.dcm has no pixel data"):
        read_dicom(path)


def test_truncated_file(tmp_path):
    good = write_slice(tmp_path / "good.dcm", np.zeros((64, 64)))
    raw = good.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(raw[: len(raw) - 1000])  # inside the pixel data
    with pytest.raises(VipInputError, match="truncated"):
        read_dicom(cut)
    head = tmp_path / "head.dcm"
    head.write_bytes(raw[:200])  # inside the header
    with pytest.raises(VipInputError, match="head.dcm"):
        read_dicom(head)


def test_empty_folder_and_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VipInputError, match="is empty"):
        read_dicom(empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not an image")
    write_slice(other / "nopix.dcm", np.zeros((4, 4)), pixels=False)
    with pytest.raises(VipInputError, match="No DICOM images"):
        read_dicom(other)


def test_compressed_without_decoder_names_package():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    try:
        _ = pydicom.dcmread(path).pixel_array
    except Exception:  # noqa: BLE001 - the case under test: no JPEG-LS decoder installed
        pass
    else:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(VipInputError, match="pip install pylibjpeg pylibjpeg-libjpeg"):
        read_dicom(path)
