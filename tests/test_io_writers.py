"""Labels writers round trip; NIfTI keeps the source image's affine; JSON export with provenance."""

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_vip import __version__
from napari_vip.core.errors import VipInputError
from napari_vip.io.labels_writers import (
    labels_array,
    write_labels_nifti,
    write_labels_npy,
    write_labels_png,
    write_labels_tiff,
)
from napari_vip.io.nifti import read_nifti
from napari_vip.io.results_json import export_results_json, load_results_json


@pytest.fixture
def labels2d():
    arr = np.zeros((12, 9), dtype=np.int32)
    arr[2:5, 3:7] = 1
    arr[8:, :2] = 300
    return arr


def test_labels_array_smallest_type():
    assert labels_array(np.array([0, 1, 255], dtype=np.int64)).dtype == np.uint8
    assert labels_array(np.array([0, 256])).dtype == np.uint16
    assert labels_array(np.array([-1, 3])).dtype == np.int8
    assert labels_array(np.array([True, False])).dtype == np.uint8
    with pytest.raises(VipInputError, match="whole numbers"):
        labels_array(np.array([0.5]))


def test_tiff_round_trip(tmp_path, labels2d):
    vol = np.stack([labels2d, labels2d * 2])
    (out,) = write_labels_tiff(str(tmp_path / "mask.tif"), vol, {})
    back = tifffile.imread(out)
    np.testing.assert_array_equal(back, vol)
    assert back.dtype == np.uint16


def test_png_round_trip(tmp_path, labels2d):
    (out,) = write_labels_png(str(tmp_path / "mask"), labels2d, {})
    assert out.endswith("mask.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), labels2d)
    with pytest.raises(VipInputError, match="PNG holds one 2D image"):
        write_labels_png(str(tmp_path / "v.png"), np.zeros((2, 4, 4), dtype=np.uint8), {})
    with pytest.raises(VipInputError, match="0..65535"):
        write_labels_png(str(tmp_path / "big.png"), np.array([[0, 70000]]), {})


def test_npy_round_trip(tmp_path, labels2d):
    (out,) = write_labels_npy(str(tmp_path / "mask.npy"), labels2d, {})
    np.testing.assert_array_equal(np.load(out), labels2d)


def test_nifti_keeps_source_affine_from_nifti_image(tmp_path):
    src_affine = np.array([[0, 0, -1.5, 30], [-2.0, 0, 0, 12], [0, 3.0, 0, -5], [0, 0, 0, 1]])
    src = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), dtype=np.int16), src_affine), str(src))
    ((image, kwargs, _),) = read_nifti(src)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[1, 2, 3] = 7
    # labels drawn on the image carry its metadata (as napari-vip's tools copy it)
    (out,) = write_labels_nifti(str(tmp_path / "mask.nii.gz"), mask, {"metadata": kwargs["metadata"]})
    saved = nib.load(out)
    # on the source file's own grid: its shape and affine, the voxel at the same place in the body
    np.testing.assert_allclose(saved.affine, src_affine)
    stored = np.asanyarray(saved.dataobj)
    assert stored.shape == (4, 5, 6) and int(stored.sum()) == 7
    (where,) = np.argwhere(stored)
    np.testing.assert_allclose(src_affine @ [*where, 1], kwargs["metadata"]["vip_affine"] @ [1, 2, 3, 1])
    ((again, _, _),) = read_nifti(out)
    np.testing.assert_array_equal(again, mask)  # presented as the image was


def test_nifti_affine_from_dicom_series(tmp_path):
    from test_io_dicom_synthetic import _series

    from napari_vip.io.dicom_reader import read_dicom

    ((image, kwargs, _),) = read_dicom(_series(tmp_path / "s"))
    (out,) = write_labels_nifti(str(tmp_path / "m.nii"), np.ones(image.shape, np.uint8),
                                {"metadata": {"vip_affine": kwargs["metadata"]["vip_affine"]}})
    np.testing.assert_allclose(nib.load(out).affine, kwargs["metadata"]["vip_affine"])


def test_nifti_without_source_uses_scale(tmp_path, labels2d):
    (out,) = write_labels_nifti(str(tmp_path / "flat.nii"), labels2d, {"scale": (0.5, 0.25)})
    img = nib.load(out)
    np.testing.assert_allclose(np.diag(img.affine), [0.5, 0.25, 1, 1])
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), labels2d)


def test_json_export_adds_provenance(tmp_path):
    results = {
        "markers": [{"kind": "ellipse", "box_xyxy": np.array([1.5, 2, 30, 40]), "color": (255, 0, 0)}],
        "prompts": ["a chest X-ray with pneumonia, indicated by a red circle"],
        "predictions": {"pneumonia": np.float32(0.25), "normal": float("nan")},
        "untrained": True,
    }
    path = export_results_json(tmp_path / "out" / "result", results)
    assert path.name == "result.json"
    doc = json.loads(path.read_text())
    assert doc["napari_vip"]["version"] == __version__
    assert doc["napari_vip"]["exported_at"].endswith("+00:00")
    assert doc["markers"][0]["box_xyxy"] == [1.5, 2.0, 30.0, 40.0]
    assert doc["predictions"] == {"pneumonia": 0.25, "normal": None}
    assert load_results_json(path)["untrained"] is True
    with pytest.raises(VipInputError, match="no JSON form"):
        export_results_json(tmp_path / "x.json", {"bad": object()})
    with pytest.raises(VipInputError, match="reserved"):
        export_results_json(tmp_path / "y.json", {"napari_vip": 1})
