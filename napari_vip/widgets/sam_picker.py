"""The SAM model chooser of the "VIP segment" dock: checkpoint file or untrained, architecture, MedSAM, device."""

from __future__ import annotations

from qtpy.QtWidgets import QCheckBox, QComboBox, QFileDialog, QFormLayout, QLineEdit, QWidget

from ..models.sam import SAM_ARCHS, SamSpec
from .form_rows import browse_row, warning_label
from .remote_server import device_combo

SAM_SOURCES = ("untrained (random weights)", "checkpoint file")
UNTRAINED_WARNING = ("<b style='color:#e8a33d'>Untrained SAM: random weights.</b> Masks only show the "
                     "workflow.")


class SamPicker(QWidget):
    """Chooses a :class:`SamSpec`: checkpoint file or untrained, architecture, MedSAM, device."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.addItems(SAM_SOURCES)
        self.arch = QComboBox()
        self.arch.setEditable(True)  # a .json config of a custom SAM also works
        self.arch.addItems(SAM_ARCHS)
        self.path = QLineEdit()
        self.path.setPlaceholderText("sam_vit_b_01ec64.pth / medsam_vit_b.pth")
        self.medsam = QCheckBox("MedSAM (its own normalisation)")
        self.device = device_combo()
        self.warning = warning_label(UNTRAINED_WARNING)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("weights", self.source)
        form.addRow("architecture", self.arch)
        form.addRow("checkpoint", browse_row(self.path, self._browse))
        form.addRow("", self.medsam)
        form.addRow("device", self.device)
        form.addRow(self.warning)
        self.source.currentTextChanged.connect(self._on_source)
        self._on_source(self.source.currentText())

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "SAM / MedSAM checkpoint", "",
                                              "Checkpoints (*.pth *.pt *.bin *.safetensors)")
        if name:
            self.path.setText(name)
            self.source.setCurrentText("checkpoint file")
            if "medsam" in name.lower():
                self.medsam.setChecked(True)

    def _on_source(self, source: str) -> None:
        self.path.setEnabled(source == "checkpoint file")
        self.warning.setVisible(source.startswith("untrained"))

    def set_untrained(self, arch: str = "vit_b") -> None:
        self.source.setCurrentText(SAM_SOURCES[0])
        self.arch.setCurrentText(arch)

    def spec(self) -> SamSpec:
        """The chosen spec; raises VipInputError for an incomplete choice."""
        arch = self.arch.currentText().strip()
        if self.source.currentText() == "checkpoint file":
            return SamSpec(arch, checkpoint=self.path.text().strip() or None, medsam=self.medsam.isChecked())
        return SamSpec(arch, untrained=True, medsam=self.medsam.isChecked())

    def device_name(self) -> str:
        return self.device.currentText()
