"""``napari-vip gui FILE`` opens every format napari-vip reads with napari-vip's reader (napari's builtin reader
claims ``.nii``/``.nii.gz``/``.dcm`` too), NIfTI volumes slices first as DICOM series.

Headless: the command runs in this process on a viewer built on napari's ``ViewerModel`` (no canvas), with the
screenshot drawn from the plane in view.  Where a display works, the real command runs in a child process and
writes napari's own screenshot.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import has_display, no_display_reason
from PIL import Image

from napari_vip.cli.main import main
from napari_vip.io.readers import project_plugin

FORMATS = ("nii", "nii.gz", "dcm", "dicom-folder", "jsrt")


def _file(tmp_path, kind):
    """A file of ``kind`` and the ``(slices, rows, cols)`` (or ``(rows, cols)``) shape the viewer should get."""
    if kind in ("nii", "nii.gz"):
        import nibabel as nib

        # stored (x, y, z) = 20 x 30 x 6, 1 mm in-plane, 4 mm slices: presented (6, 30, 20)
        data = np.arange(20 * 30 * 6, dtype=np.int16).reshape(20, 30, 6)
        path = tmp_path / f"ct.{kind}"
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0])), str(path))
        return path, (6, 30, 20)
    from pydicom.data import get_testdata_file

    if kind == "dcm":
        path = tmp_path / "ct.dcm"
        shutil.copy(get_testdata_file("CT_small.dcm"), path)
        return path, (128, 128)
    if kind == "dicom-folder":
        from test_volume_export import ct_series

        folder, _ = ct_series.__wrapped__(tmp_path)
        return folder, (4, 128, 128)
    from test_io_jsrt import write_img

    path = tmp_path / "JPCLN001.IMG"
    write_img(path)
    return path, (2048, 2048)


class HeadlessViewer:
    """What ``open_viewer`` uses of ``napari.Viewer``, on a ``ViewerModel``; ``screenshot`` saves the plane in
    view (min-max to uint8)."""

    made: list = []

    def __init__(self, show=True):
        from napari.components import ViewerModel

        self.model = ViewerModel()
        self.layers, self.dims = self.model.layers, self.model.dims
        self.opened, self.closed = [], False
        self.window = self
        HeadlessViewer.made.append(self)

    def open(self, path, plugin=None):
        self.opened.append((str(path), plugin))
        return self.model.open(path, plugin=plugin)

    def add_plugin_dock_widget(self, plugin, name, tabify=True):
        return type("Dock", (), {"raise_": lambda self: None})(), None

    def geometry(self):
        return 0, 0, 1400, 900

    def resize(self, w, h):
        pass

    def reset_view(self):
        self.model.reset_view()

    def screenshot(self, path, canvas_only=False):
        from napari_vip.layers import image_plane

        plane = image_plane(self.layers[0], self.dims).astype(float)
        plane = (plane - plane.min()) / max(np.ptp(plane), 1e-9) * 255
        Image.fromarray(plane.astype(np.uint8)).save(path)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("kind", FORMATS)
def test_gui_opens_the_file_with_napari_vip_reader_headless(kind, tmp_path, monkeypatch, qtbot):
    import napari
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    path, shape = _file(tmp_path, kind)
    assert project_plugin(path) == "napari-vip"
    HeadlessViewer.made.clear()
    monkeypatch.setattr(napari, "Viewer", HeadlessViewer)
    monkeypatch.setattr(napari, "run", lambda: qtbot.waitUntil(lambda: HeadlessViewer.made[-1].closed, timeout=15000))
    shot = tmp_path / "shot.png"
    assert main(["gui", str(path), "--screenshot", str(shot)]) == 0
    (viewer,) = HeadlessViewer.made
    assert viewer.opened == [(str(path), "napari-vip")]
    (layer,) = viewer.layers
    assert layer.data.shape == shape and layer.metadata.get("vip_window") is not None
    assert np.asarray(Image.open(shot)).shape == shape[-2:]  # the plane in view: an axial slice for volumes
    if len(shape) == 3:
        assert viewer.dims.order[0] == 0 and viewer.dims.nsteps[0] == shape[0]  # the slider walks the slices
    if kind.startswith("nii"):  # anterior up, the patient's right on the viewer's left
        aff = layer.metadata["vip_affine"]
        assert (aff @ [0, 0, 0, 1])[1] > (aff @ [0, 29, 0, 1])[1]
        assert (aff @ [0, 0, 0, 1])[0] > (aff @ [0, 0, 19, 1])[0]
        assert tuple(layer.scale) == pytest.approx((4.0, 1.0, 1.0))


@pytest.mark.parametrize("kind", FORMATS)
def test_gui_screenshot_in_a_real_window(kind, tmp_path):
    if not has_display():
        pytest.skip(no_display_reason())
    path, shape = _file(tmp_path, kind)
    shot = tmp_path / "shot.png"
    code = "import sys; from napari_vip.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "gui", str(path), "--screenshot", str(shot)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MultipleReaderError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert Image.open(shot).size[0] > 400
