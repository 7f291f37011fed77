"""Every DICOM test file pydicom ships either opens with pydicom's own values and window, or
gives a clear :class:`VipInputError`."""

import os
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from napari_vip.core.errors import VipInputError
from napari_vip.io.dicom import _set_missing_transfer_syntax
from napari_vip.io.dicom_reader import get_dicom_reader, read_dicom

FILES = sorted(get_testdata_files())


def _reference(path):
    """pydicom's own answer: (values, dataset), or (None, exception) when pydicom cannot decode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            _set_missing_transfer_syntax(ds)
            arr = ds.pixel_array
        except Exception as err:  # noqa: BLE001
            return None, err
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi.startswith("PALETTE"):
        return apply_color_lut(arr, ds), ds
    if int(ds.get("SamplesPerPixel", 1)) > 1:
        return arr, ds
    values = apply_modality_lut(arr, ds)
    if str(ds.get("Modality")) == "RTDOSE" and "DoseGridScaling" in ds:
        values = values * float(ds.DoseGridScaling)
    return values, ds


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(f, os.path.dirname(FILES[0])) for f in FILES])
def test_pydicom_test_file(path):
    if os.path.isdir(path):
        try:
            layers = read_dicom(path)
        except VipInputError as err:
            assert "Series" in str(err) or "DICOM" in str(err)
            return
        for data, kwargs, kind in layers:
            assert kind == "image" and data.ndim >= 2
            assert "vip_window" in kwargs["metadata"]
        return
    expected, ref = _reference(path)
    try:
        layers = read_dicom(path)
    except VipInputError as err:
        message = str(err)
        assert os.path.basename(path) in message  # says which file
        assert len(message) > 40
        if expected is not None:
            pytest.fail(f"pydicom decodes {path} but napari-vip refused it: {message}")
        if "Unable to decompress" in str(ref) or "Unable to decode" in str(ref):
            assert "pip install" in message, message
        return
    assert expected is not None, "napari-vip opened a file pydicom cannot decode"
    ((data, kwargs, kind),) = layers
    assert kind == "image"
    assert data.shape == expected.shape
    np.testing.assert_allclose(data.astype(np.float64), expected.astype(np.float64), rtol=1e-6, atol=1e-9)
    assert len(kwargs["scale"]) == data.ndim - (1 if kwargs["rgb"] else 0)
    meta = kwargs["metadata"]
    assert not any("Patient" in k for k in meta["vip_dicom"])
    if kwargs["rgb"]:
        return
    assert kwargs["colormap"] == ("gray_r" if ref.PhotometricInterpretation == "MONOCHROME1" else "gray")
    low, high = kwargs["contrast_limits"]
    assert meta["vip_window"] == (low, high)
    if "WindowCenter" in ref and "VOILUTSequence" not in ref and ref.get("VOILUTFunction", "LINEAR") == "LINEAR":
        values = expected.astype(np.float64)
        voi = apply_voi_lut(values.copy(), ref, index=0)
        y_min, y_max = apply_voi_lut(np.array([-1e12, 1e12]), ref, index=0)
        theirs = (voi - y_min) / (y_max - y_min)
        ours = np.clip((values - low) / (high - low), 0.0, 1.0)
        np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_monochrome1_radiograph_uses_inverted_colormap_and_keeps_data():
    path = next(f for f in FILES if f.endswith(os.path.join("CR1", "6154")))
    ((data, kwargs, _),) = read_dicom(path)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert kwargs["colormap"] == "gray_r"
    assert kwargs["metadata"]["vip_invert"] is True
    np.testing.assert_allclose(data, apply_modality_lut(ds.pixel_array, ds), rtol=1e-6)  # not inverted


def test_ct_window_and_units():
    path = get_testdata_file("693_J2KI.dcm")  # CT, window 40/100
    ((data, kwargs, _),) = read_dicom(path)
    assert kwargs["metadata"]["vip_units"] == "HU"
    assert kwargs["contrast_limits"] == (40 - 0.5 - 99 / 2, 40 - 0.5 + 99 / 2)
    assert kwargs["metadata"]["vip_dicom"]["Modality"] == "CT"


def test_multiple_windows_first_is_used():
    path = get_testdata_file("examples_overlay.dcm")  # WindowCenter [450, 200], WindowWidth [790, 443]
    ((_, kwargs, _),) = read_dicom(path)
    info = kwargs["metadata"]["vip_window_info"]
    assert (info["center"], info["width"]) == (450, 790)
    assert len(info["all"]) == 2


def test_multiframe_and_colour():
    ((data, kwargs, _),) = read_dicom(get_testdata_file("examples_ybr_color.dcm"))
    assert data.shape == (30, 240, 320, 3) and kwargs["rgb"] and len(kwargs["scale"]) == 3
    ((data, kwargs, _),) = read_dicom(get_testdata_file("examples_palette.dcm"))
    assert data.shape == (350, 800, 3) and kwargs["rgb"]
    ((data, kwargs, _),) = read_dicom(get_testdata_file("rtdose.dcm"))
    assert data.shape == (15, 10, 10) and kwargs["scale"][0] == pytest.approx(5.0)
    assert kwargs["metadata"]["vip_affine"].shape == (4, 4)


def test_window_preset_overrides_file():
    ((_, kwargs, _),) = read_dicom(get_testdata_file("CT_small.dcm"), window="lung")
    assert kwargs["contrast_limits"] == (-600 - 0.5 - 1499 / 2, -600 - 0.5 + 1499 / 2)
    assert kwargs["metadata"]["vip_window_info"]["source"] == "preset: lung"


def test_reader_claims_dicom_and_declines_others(tmp_path):
    assert get_dicom_reader(get_testdata_file("CT_small.dcm")) is read_dicom
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert get_dicom_reader(str(other)) is None
    assert get_dicom_reader(str(tmp_path)) is None  # a folder of other files is left to other readers
    (tmp_path / "store.zarr").mkdir()
    assert get_dicom_reader(str(tmp_path / "store.zarr")) is None
    (tmp_path / "empty").mkdir()
    assert get_dicom_reader(str(tmp_path / "empty")) is read_dicom  # so the user hears it is empty
