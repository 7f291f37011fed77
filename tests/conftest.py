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


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """pytest-xvfb gives napari's canvas an OpenGL context on a virtual display; without one, Qt runs
    offscreen: the docks are tested on ``ViewerModel`` (:func:`make_viewer`) and the tests that need the
    canvas are skipped with what to install (:func:`make_window_viewer`)."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CONFIGS = Path(__file__).parent / "configs"

#: What to install when napari's canvas cannot get OpenGL.
NO_DISPLAY_REASON = ("needs napari's OpenGL canvas: no display here; install an X virtual framebuffer "
                     "(Debian/Ubuntu: apt-get install xvfb; pytest-xvfb then starts it) or run under a desktop")


def has_display() -> bool:
    """Whether napari's canvas can get OpenGL: an X display (pytest-xvfb's virtual one counts) or Wayland."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
        pytest.skip(NO_DISPLAY_REASON)
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
