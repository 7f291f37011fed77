"""The segmentation model chooser of the "VIP segment" dock: checkpoint file or untrained, architecture (SAM 2.1,
MedSAM2, SAM, MedSAM), device, and a line on what the chosen architecture costs and does."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QFileDialog, QFormLayout, QLineEdit, QWidget

from ..models.sam import SAM_ARCHS, SamSpec
from ..models.sam2_family import DEFAULT_SAM2_ARCH, SAM2_ARCHS, Sam2Spec, is_sam2_arch
from .form_rows import browse_row, device_row, precision_combo, warning_label
from .remote_server import device_combo

SAM_SOURCES = ("untrained (random weights)", "checkpoint file")
UNTRAINED_WARNING = ("<b style='color:#e8a33d'>Untrained model: random weights.</b> Masks only show the "
                     "workflow.")
#: What each architecture costs and does (CPU encoder times: docs/benchmarks.md, bench_volume.py).
ARCH_NOTES = {
    "sam2.1_hiera_t": "Fastest encoder: about 5x faster than SAM vit_b on a CPU. Tracks through volumes.",
    "sam2.1_hiera_s": "About 1.2x hiera-t's encoder time; a little more accurate. Tracks through volumes.",
    "sam2.1_hiera_b+": "About 2x hiera-t's encoder time (2.4x faster than SAM vit_b); more accurate.",
    "sam2.1_hiera_l": "The most accurate SAM 2 and the slowest; for a GPU.",
    "medsam2": "MedSAM2: hiera-t fine-tuned on CT/MR/PET volumes, at 512x512. File: MedSAM2_latest.pt.",
    "vit_b": "About 5x hiera-t's encoder time on a CPU; volumes go slice by slice. MedSAM: tick the box.",
    "vit_l": "A larger encoder than vit_b (24 blocks, 1024 wide); volumes go slice by slice.",
    "vit_h": "The largest SAM (32 blocks, 1280 wide); for a GPU.",
}
#: Official checkpoint file names -> architecture, so choosing a file picks its architecture.
CHECKPOINT_NAMES = (("medsam2", "medsam2"), ("hiera_tiny", "sam2.1_hiera_t"), ("hiera_small", "sam2.1_hiera_s"),
                    ("hiera_base_plus", "sam2.1_hiera_b+"), ("hiera_large", "sam2.1_hiera_l"),
                    ("vit_b", "vit_b"), ("vit_l", "vit_l"), ("vit_h", "vit_h"))


def sam2_installed() -> bool:
    """Whether Meta's ``sam2`` package can be imported (the SAM 2 family is offered only then)."""
    import importlib.util

    return importlib.util.find_spec("sam2") is not None


class SamPicker(QWidget):
    """Chooses a :class:`SamSpec` or :class:`Sam2Spec`: checkpoint file or untrained, architecture, MedSAM,
    device.  SAM 2.1 hiera-tiny is the default where ``sam2`` is installed, else SAM vit_b."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.addItems(SAM_SOURCES)
        self.arch = QComboBox()
        self.arch.setEditable(True)  # a .json config of a custom SAM or SAM 2 also works
        archs = (list(SAM2_ARCHS) if sam2_installed() else []) + list(SAM_ARCHS)
        self.arch.addItems(archs)
        self.arch.setCurrentText(DEFAULT_SAM2_ARCH if DEFAULT_SAM2_ARCH in archs else "vit_b")
        self.path = QLineEdit()
        self.medsam = QCheckBox("MedSAM (its own normalisation)")
        self.about = warning_label("")  # two lines: what the architecture costs and does
        self.device = device_combo()
        self.precision = precision_combo()
        self.warning = warning_label(UNTRAINED_WARNING)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("weights", self.source)
        form.addRow("architecture", self.arch)
        form.addRow(self.about)
        form.addRow("checkpoint", browse_row(self.path, self._browse))
        form.addRow("", self.medsam)
        form.addRow("device", device_row(self.device, self.precision))
        form.addRow(self.warning)
        self.source.currentTextChanged.connect(self._on_source)
        self.arch.currentTextChanged.connect(self._on_arch)
        self._on_source(self.source.currentText())
        self._on_arch(self.arch.currentText())

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "SAM / SAM 2 / MedSAM checkpoint", "",
                                              "Checkpoints (*.pth *.pt *.bin *.safetensors)")
        if name:
            self.use_checkpoint(name)

    def use_checkpoint(self, path: str) -> None:
        """Choose the checkpoint ``path``; an official file name (``sam2.1_hiera_tiny.pt``, ``MedSAM2_latest.pt``,
        ``medsam_vit_b.pth``...) also picks its architecture and the MedSAM box."""
        self.path.setText(path)
        self.source.setCurrentText("checkpoint file")
        low = path.lower().replace("-", "_")
        for part, arch in CHECKPOINT_NAMES:
            if part in low and self.arch.findText(arch) >= 0:
                self.arch.setCurrentText(arch)
                break
        self.medsam.setChecked("medsam" in low and not is_sam2_arch(self.arch.currentText().strip()))

    def _on_source(self, source: str) -> None:
        self.path.setEnabled(source == "checkpoint file")
        self.warning.setVisible(source.startswith("untrained"))

    def _on_arch(self, arch: str) -> None:
        sam2 = is_sam2_arch(arch.strip())
        self.medsam.setEnabled(not sam2)
        if sam2:
            self.medsam.setChecked(False)
        self.path.setPlaceholderText("sam2.1_hiera_tiny.pt / MedSAM2_latest.pt" if sam2
                                     else "sam_vit_b_01ec64.pth / medsam_vit_b.pth")
        self.about.setText(ARCH_NOTES.get(arch.strip(), "A custom configuration (.json)."))
        self.arch.setToolTip(self.about.text())

    def set_untrained(self, arch: str = "vit_b") -> None:
        self.source.setCurrentText(SAM_SOURCES[0])
        self.arch.setCurrentText(arch)

    def spec(self) -> SamSpec | Sam2Spec:
        """The chosen spec; raises VipInputError for an incomplete choice."""
        arch = self.arch.currentText().strip()
        untrained = self.source.currentText() != "checkpoint file"
        checkpoint = None if untrained else (self.path.text().strip() or None)
        precision = self.precision.currentText()
        if is_sam2_arch(arch):
            return Sam2Spec(arch, checkpoint=checkpoint, untrained=untrained, precision=precision)
        return SamSpec(arch, checkpoint=checkpoint, medsam=self.medsam.isChecked(), untrained=untrained,
                       precision=precision)

    def device_name(self) -> str:
        return self.device.currentText()
