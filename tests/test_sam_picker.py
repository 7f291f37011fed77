"""The segment dock's model chooser: SAM 2.1 hiera-tiny by default where sam2 is installed, the trade-off line,
official checkpoint names picking their architecture, and the spec of each family."""

from __future__ import annotations

import pytest

from napari_vip.core.errors import VipInputError
from napari_vip.models.sam import SamSpec
from napari_vip.models.sam2_family import Sam2Spec
from napari_vip.widgets.sam_picker import ARCH_NOTES, SamPicker


@pytest.fixture
def picker(qtbot):
    w = SamPicker()
    qtbot.addWidget(w)
    return w


def test_sam2_hiera_tiny_is_the_default_and_says_why(picker):
    assert picker.arch.currentText() == "sam2.1_hiera_t"
    assert "Fastest encoder" in picker.about.text() and picker.arch.toolTip() == picker.about.text()
    spec = picker.spec()
    assert isinstance(spec, Sam2Spec) and spec.untrained and spec.arch == "sam2.1_hiera_t"
    assert not picker.medsam.isEnabled()  # the MedSAM box is for SAM 1 files
    picker.arch.setCurrentText("vit_b")
    assert picker.medsam.isEnabled() and picker.about.text() == ARCH_NOTES["vit_b"]
    assert isinstance(picker.spec(), SamSpec)


@pytest.mark.parametrize("name, arch, medsam", [
    ("/m/sam2.1_hiera_tiny.pt", "sam2.1_hiera_t", False),
    ("/m/sam2.1_hiera_base_plus.pt", "sam2.1_hiera_b+", False),
    ("/m/sam2.1_hiera_large.pt", "sam2.1_hiera_l", False),
    ("/m/MedSAM2_latest.pt", "medsam2", False),
    ("/m/medsam_vit_b.pth", "vit_b", True),
    ("/m/sam_vit_h_4b8939.pth", "vit_h", False),
])
def test_an_official_checkpoint_name_picks_its_architecture(picker, name, arch, medsam):
    picker.use_checkpoint(name)
    assert picker.arch.currentText() == arch and picker.medsam.isChecked() is medsam
    spec = picker.spec()
    assert spec.checkpoint == name and not spec.untrained and spec.arch == arch
    assert isinstance(spec, Sam2Spec if arch.startswith(("sam2", "medsam2")) else SamSpec)


def test_a_checkpoint_choice_without_a_file_is_refused(picker):
    picker.source.setCurrentText("checkpoint file")
    with pytest.raises(VipInputError, match="exactly one source of weights"):
        picker.spec()
