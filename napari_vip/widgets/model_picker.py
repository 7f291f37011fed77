"""Choosing a CLIP model: hub default, pretrained tag, local checkpoint or untrained; a device and a precision."""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QLineEdit, QWidget

from ..models.spec import DEFAULT_CLIP_ARCH, DEFAULT_UNTRAINED_ARCH, ModelSpec
from .form_rows import browse_row, device_row, precision_combo, warning_label
from .remote_server import device_combo

SOURCES = ("hub (BiomedCLIP)", "pretrained tag", "checkpoint file", "untrained (random weights)")

UNTRAINED_WARNING = ("<b style='color:#e8a33d'>Untrained model: random weights.</b> "
                     "Results only show the workflow; they mean nothing clinically.")


class ModelPicker(QWidget):
    """Builds a :class:`ModelSpec` from the user's choice.  ``changed`` fires on any edit."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.source = QComboBox()
        self.source.addItems(SOURCES)
        self.arch = QLineEdit(DEFAULT_CLIP_ARCH)
        self.tag = QLineEdit()
        self.tag.setPlaceholderText("e.g. openai")
        self.path = QLineEdit()
        self.path.setPlaceholderText(".pt / .pth / .bin / .safetensors")
        self.device = device_combo()
        self.precision = precision_combo()
        self.warning = warning_label(UNTRAINED_WARNING)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("weights", self.source)
        form.addRow("architecture", self.arch)
        form.addRow("tag", self.tag)
        form.addRow("checkpoint", browse_row(self.path, self._browse))
        form.addRow("device", device_row(self.device, self.precision))
        form.addRow(self.warning)
        self._form = form
        self.source.currentTextChanged.connect(self._on_source)
        for w in (self.arch, self.tag, self.path):
            w.textChanged.connect(self.changed)
        self.device.currentTextChanged.connect(self.changed)
        self.precision.currentTextChanged.connect(self.changed)
        self._on_source(self.source.currentText())

    def _browse(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "CLIP checkpoint", "", "Checkpoints (*.pt *.pth *.bin *.safetensors)")
        if name:
            self.path.setText(name)

    def _on_source(self, source: str) -> None:
        hub = source.startswith("hub")
        if hub:
            self.arch.setText(DEFAULT_CLIP_ARCH)
        elif self.arch.text().startswith("hf-hub:"):
            self.arch.setText(DEFAULT_UNTRAINED_ARCH)
        self.arch.setEnabled(not hub)
        self._show_row(2, source == "pretrained tag")
        self._show_row(3, source == "checkpoint file")
        self.warning.setVisible(source.startswith("untrained"))
        self.changed.emit()

    def _show_row(self, row: int, visible: bool) -> None:
        if hasattr(self._form, "setRowVisible"):  # Qt >= 6.4
            self._form.setRowVisible(row, visible)
        for role in (QFormLayout.LabelRole, QFormLayout.FieldRole):
            item = self._form.itemAt(row, role)
            if item is not None and item.widget() is not None:
                item.widget().setEnabled(visible)

    def set_untrained(self, arch: str = DEFAULT_UNTRAINED_ARCH) -> None:
        self.source.setCurrentText(SOURCES[3])
        self.arch.setText(arch)

    def spec(self) -> ModelSpec:
        """The chosen spec; raises VipInputError for an incomplete choice."""
        source = self.source.currentText()
        arch = self.arch.text().strip()
        precision = self.precision.currentText()
        if source.startswith("hub"):
            return ModelSpec(DEFAULT_CLIP_ARCH, precision=precision)
        if source == "pretrained tag":
            return ModelSpec(arch, pretrained=self.tag.text().strip() or None, precision=precision)
        if source == "checkpoint file":
            return ModelSpec(arch, checkpoint=self.path.text().strip() or None, precision=precision)
        return ModelSpec(arch, untrained=True, precision=precision)

    def device_name(self) -> str:
        return self.device.currentText()
