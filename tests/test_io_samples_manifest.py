"""Samples, manifest entries, napari layer compatibility and the no-Qt rule for ``napari_vip.io``."""

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_vip.io import samples

MANIFEST = Path(__file__).parents[1] / "napari_vip" / "napari.yaml"


def test_manifest_loads_and_io_python_names_import():
    import npe2

    manifest = npe2.PluginManifest.from_file(str(MANIFEST))
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    ours = {k: v for k, v in commands.items() if v.startswith("napari_vip.io")}
    for python_name in ours.values():
        module, attr = python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), python_name
    keys = {s.key for s in manifest.contributions.sample_data}
    assert {"retina", "ct_slice", "mr_slice", "shepp_logan"} <= keys
    assert {r.command for r in manifest.contributions.readers} >= {"napari-vip.get_dicom_reader",
                                                                   "napari-vip.get_nifti_reader"}
    assert len([w for w in manifest.contributions.writers if w.layer_types == ["labels"]]) >= 4


def test_io_never_imports_qt():
    code = ("import sys; import napari_vip.io.dicom, napari_vip.io.dicom_series, napari_vip.io.dicom_reader, "
            "napari_vip.io.nifti, napari_vip.io.samples, napari_vip.io.labels_writers, napari_vip.io.results_json, "
            "napari_vip.io.open_image, napari_vip.io.windows; "
            "from napari_vip.io.samples import ct_slice; ct_slice(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["retina", "ct_slice", "mr_slice", "shepp_logan"])
def test_samples_make_valid_napari_layers(name):
    from napari.layers import Image

    ((data, kwargs, kind),) = getattr(samples, name)()
    assert kind == "image"
    layer = Image(data, **kwargs)  # no viewer, no Qt: napari validates the keyword arguments
    assert layer.data.shape == data.shape


def test_ct_sample_is_hounsfield_with_soft_tissue_window():
    ((data, kwargs, _),) = samples.ct_slice()
    assert data.shape == (128, 128) and data.dtype == np.int16
    assert kwargs["contrast_limits"] == (-160.0, 239.0)
    assert kwargs["metadata"]["vip_units"] == "HU"
    ((_, mr_kwargs, _),) = samples.mr_slice()
    assert mr_kwargs["metadata"]["vip_window_info"]["source"].startswith("file")


def test_retina_unchanged():
    ((data, kwargs, _),) = samples.retina()
    assert data.shape == (1411, 1411, 3) and kwargs["rgb"] is True


def test_dicom_layers_through_napari(tmp_path):
    """Reader output builds napari layers; the npe2 writer saves a Labels layer."""
    from napari.layers import Image, Labels
    from pydicom.data import get_testdata_file

    from napari_vip.io.dicom_reader import read_dicom

    for name in ("SC_rgb_rle_32bit_2frame.dcm", "examples_palette.dcm", "rtdose.dcm", "MR_small.dcm"):
        ((data, kwargs, _),) = read_dicom(get_testdata_file(name))
        layer = Image(data, **kwargs)
        assert tuple(layer.scale) == pytest.approx(kwargs["scale"])
        if not kwargs["rgb"]:
            assert tuple(layer.contrast_limits) == pytest.approx(kwargs["contrast_limits"])
    import npe2

    npe2.PluginManager.instance().discover()  # napari does this when it starts
    labels = Labels(np.eye(8, dtype=np.uint8) * 3)
    for suffix in (".tif", ".png", ".npy", ".nii.gz"):
        written = labels.save(str(tmp_path / f"eye{suffix}"), plugin="napari-vip")
        assert written and Path(written[0]).exists(), suffix


def test_model_input_from_dicom_file_follows_window():
    from pydicom.data import get_testdata_file

    from napari_vip.io.open_image import model_input_from_file

    path = get_testdata_file("MR_small.dcm")  # window 600 / 1600 -> limits (-200, 1399)
    mi = model_input_from_file(path)
    assert mi.rgb.shape == (64, 64, 3) and mi.rgb.dtype == np.uint8
    assert mi.window == (-200.0, 1399.0)


def test_npe2_reads_dicom_file_and_series_folder():
    import os

    import npe2
    from pydicom.data import get_testdata_file

    npe2.PluginManager.instance().discover()
    ((_, kwargs, _),) = npe2.read([get_testdata_file("MR_small.dcm")], stack=False, plugin_name="napari-vip")
    assert kwargs["contrast_limits"] == (-200.0, 1399.0)
    folder = os.path.dirname(get_testdata_file("dicomdirtests/77654033/CT2/17106"))
    ((data, _, _),) = npe2.read([folder], stack=False, plugin_name="napari-vip")
    assert data.shape == (4, 16, 16)
