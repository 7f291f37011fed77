"""Shared fixtures: small real architectures with random weights, saved as checkpoints by the tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# The tests run models and napari canvases in one process. Load torch's compiler stack (triton, which
# carries its own LLVM) before any OpenGL context exists: under Mesa's software renderer (llvmpipe, what a
# virtual display uses) loading it afterwards crashes the process. The plugin itself never imports torch
# in the GUI process; models run in the worker process.
import torch  # noqa: E402,F401
import torchvision  # noqa: E402,F401

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# docks autosave their annotations: keep the tests' saves out of the user's cache folder
os.environ.setdefault("NAPARI_VIP_AUTOSAVE", tempfile.mkdtemp(prefix="napari-vip-autosave-"))


#: Run in a fresh interpreter: open the display's Qt platform and an OpenGL context through vispy, as napari's
#: canvas does.  Qt aborts the process when a display is set but its platform plugin cannot load (Qt 6.5+ needs
#: libxcb-cursor0 and other xcb libraries), so this must never run in the test process itself.
DISPLAY_PROBE = """
import qtpy
from qtpy.QtWidgets import QApplication
app = QApplication([])
from vispy import app as vispy_app
vispy_app.use_app(qtpy.API_NAME.lower())
from vispy.gloo import gl
from vispy.scene import SceneCanvas
canvas = SceneCanvas(show=True, size=(32, 32))
canvas.render()
version = gl.glGetParameter(gl.GL_VERSION)
canvas.close()
assert version, "no OpenGL version"
print(app.platformName(), version)
"""

#: What to install when napari's canvas cannot get OpenGL (the packages are the README's list).
NO_DISPLAY_REASON = ("needs napari's OpenGL canvas, which cannot open here: install an X virtual framebuffer and Qt's "
                     "xcb libraries (Debian/Ubuntu: the apt-get line in README.md; pytest-xvfb then starts Xvfb) or "
                     "run under a desktop")
#: Why the canvas tests are skipped in this run (``None``: a usable display).
_display_problem: list[str | None] = [None]


def probe_display(env: dict | None = None, timeout: float = 60.0) -> str | None:
    """``None`` if Qt and OpenGL open the display named in ``env`` (default: this process's environment) in a
    child process; else why not, in one line."""
    import subprocess
    import sys

    env = dict(os.environ if env is None else env)
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    env.pop("QT_QPA_PLATFORM", None)
    try:
        done = subprocess.run([sys.executable, "-c", DISPLAY_PROBE], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"opening display {env.get('DISPLAY')!r} did not finish in {timeout:.0f} s"
    if done.returncode == 0:
        return None
    lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    why = next((ln for ln in lines if "xcb" in ln or "platform plugin" in ln), lines[-1] if lines else "")
    return (f"display {env.get('DISPLAY') or env.get('WAYLAND_DISPLAY')!r} is set but Qt/OpenGL cannot use it "
            f"(exit {done.returncode}: {why.strip()[:200]})")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Decide once, after pytest-xvfb has started its virtual display (if it could), whether napari's canvas
    can run here.  A display that is set but cannot be opened (no Xvfb, or Qt's xcb libraries missing) would
    abort the whole run at the first Qt test; it is probed in a child process, and Qt falls back to offscreen:
    the docks are tested on ``ViewerModel`` (:func:`make_viewer`) and the tests that need the canvas are
    skipped saying why (:func:`make_window_viewer`)."""
    problem = probe_display()
    _display_problem[0] = problem
    if problem is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


CONFIGS = Path(__file__).parent / "configs"


def has_display() -> bool:
    """Whether napari's canvas can get OpenGL here (probed once per run: see :func:`pytest_configure`)."""
    return _display_problem[0] is None


def no_display_reason() -> str:
    return f"{NO_DISPLAY_REASON} ({_display_problem[0]})"


@pytest.fixture
def make_viewer(request, qtbot):
    """A viewer factory for dock tests.

    With a display: napari's ``make_napari_viewer`` (a full ``napari.Viewer`` with its canvas).  Without one
    (a fresh headless machine, Qt offscreen): ``napari.components.ViewerModel`` instances, which hold the layers,
    dims and events the docks use and need no OpenGL; the docks themselves are real Qt widgets.
    """
    if has_display():
        return request.getfixturevalue("make_napari_viewer")
    from napari.components import ViewerModel

    made = []

    def factory(*args, **kwargs):
        kwargs.pop("show", None)
        viewer = ViewerModel(*args, **kwargs)
        made.append(viewer)
        return viewer

    request.addfinalizer(lambda: [v.layers.clear() for v in made])
    return factory


@pytest.fixture
def make_window_viewer(request):
    """napari's ``make_napari_viewer`` for tests that need the viewer's window (dock widgets, the canvas);
    skipped with what to install when there is no display."""
    if not has_display():
        pytest.skip(no_display_reason())
    return request.getfixturevalue("make_napari_viewer")


@pytest.fixture(scope="session")
def tiny_clip_arch() -> str:
    """Path of a tiny open_clip ViT config (2 layers, width 64, 64x64 input): a real CLIP, fast on a CPU."""
    return str(CONFIGS / "vip-tiny-vit.json")


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory, tiny_clip_arch):
    """``(arch, path)`` of a state dict saved from a randomly initialised tiny CLIP (seeded)."""
    from napari_vip.models.clip import _create

    torch.manual_seed(0)
    model, _, _ = _create(tiny_clip_arch, "cpu")
    path = tmp_path_factory.mktemp("ckpt") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return tiny_clip_arch, str(path)


@pytest.fixture
def gray_image() -> np.ndarray:
    """``(120, 160)`` uint16 gradient with a bright square at rows 40..59, cols 70..99."""
    img = np.tile(np.linspace(0, 1000, 160), (120, 1)).astype(np.uint16)
    img[40:60, 70:100] = 4000
    return img


@pytest.fixture(scope="session")
def tiny_sam_arch() -> str:
    """Path of a tiny SAM config (2-block ViT encoder of width 32 at 128x128, 32-wide decoder): real
    segment-anything modules, fast on a CPU."""
    return str(CONFIGS / "vip-tiny-sam.json")


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory, tiny_sam_arch):
    """``(arch, path)`` of a state dict saved from a randomly initialised tiny SAM (seeded)."""
    from napari_vip.models.sam import build_sam

    torch.manual_seed(1)
    sam = build_sam(tiny_sam_arch)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(sam.state_dict(), path)
    return tiny_sam_arch, str(path)


@pytest.fixture(scope="session")
def tiny_sam2_arch() -> str:
    """Path of a tiny SAM 2.1 config (hiera-tiny's modules with a 16-wide, 5-block trunk at 128x128 and one
    memory-attention layer): the real sam2 network family, fast on a CPU."""
    return str(CONFIGS / "vip-tiny-sam2.json")


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory, tiny_sam2_arch):
    """``(arch, path)`` of a ``{"model": state_dict}`` file (the official SAM 2.1 layout) saved from a randomly
    initialised tiny SAM 2 (seeded)."""
    from napari_vip.models.sam2_family import build_sam2_network

    torch.manual_seed(2)
    net = build_sam2_network(tiny_sam2_arch)
    path = tmp_path_factory.mktemp("sam2") / "tiny_sam2.pt"
    torch.save({"model": net.state_dict()}, path)
    return tiny_sam2_arch, str(path)


@pytest.fixture
def endoscopy_dock(make_viewer, qtbot, tiny_sam_arch, tmp_path, monkeypatch):
    """``(viewer, SegmentWidget)`` on a ``(48, 64, 3)`` uint8 picture with a pink box at rows 10..29, cols
    20..49, the dock's SAM a tiny untrained one on the CPU; the worker ends with the test."""
    from napari_vip.widgets.segment import SegmentWidget

    monkeypatch.setenv("NAPARI_VIP_CACHE", str(tmp_path / "cache"))
    viewer = make_viewer()
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:30, 20:50] = (230, 120, 150)
    viewer.add_image(img, name="endoscopy", rgb=True)
    widget = SegmentWidget(viewer)
    widget.model.set_untrained(tiny_sam_arch)
    widget.model.device.setCurrentText("cpu")
    yield viewer, widget
    widget.bridge.shutdown()


@pytest.fixture
def one_torch_thread():
    """Tiny models train fastest on one torch thread (and the machine's cores are shared); restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """A synthetic segmentation set in medvlsm's layout where the text names the target (a disc or a square):
    24 train, 6 val, 8 test images (see ``vlsm_fixtures.write_shapes_dataset``)."""
    from vlsm_fixtures import write_shapes_dataset

    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 24, "val": 6, "test": 8})


@pytest.fixture(scope="session")
def small_clipseg(tmp_path_factory):
    """A folder holding a small CLIPSeg (64 px input) with random weights, loadable with ``load_vlsm``."""
    from vlsm_fixtures import save_clipseg_folder, small_clipseg_arch

    return save_clipseg_folder(tmp_path_factory.mktemp("small_clipseg"), small_clipseg_arch(), input_size=64)
