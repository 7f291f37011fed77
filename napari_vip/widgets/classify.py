"""The "VIP classify" dock: markers on the image, candidate findings, CLIP probabilities per condition."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..core.errors import VipInputError
from ..core.markers import COLORS, STYLES, render_marker
from ..core.prompts import (
    DEFAULT_FINDINGS,
    DEFAULT_MODALITY,
    DEFAULT_TEMPLATE,
    MODALITIES,
    SUFFIXES,
    check_classes,
    check_template,
)
from ..io.windows import WINDOW_PRESETS
from ..layers import (
    MARKERS_LAYER,
    MODEL_VIEW_LAYER,
    ensure_markers_layer,
    markers_from_layer,
    model_input,
    shape_color,
    sync_arrows_layer,
)
from ..worker.classify import ClassifyRequest
from .dock import VipDock
from .form_rows import browse_row
from .layer_choice import ImageLayerChooser
from .model_picker import ModelPicker
from .results_view import ProbabilityTable
from .status_text import error_html, show_failure, untrained_prefix, warning_html


class ClassifyWidget(VipDock):
    """Dock: pick the image, draw markers, type findings, press Classify.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self._hooked_markers = None

        self.image_combo = ImageLayerChooser(napari_viewer, follow_active=True)
        self.window_preset = QComboBox()
        self.window_preset.addItems(["as displayed", *WINDOW_PRESETS])
        self.window_preset.setToolTip("CT window presets (Hounsfield units); the model sees the image as displayed")
        self.window_preset.textActivated.connect(self.apply_window_preset)
        self.classes = QPlainTextEdit("\n".join(DEFAULT_FINDINGS[DEFAULT_MODALITY]))
        self.classes.setPlaceholderText("one finding per line")
        self.classes.setMinimumHeight(60)
        self.classes.setMaximumHeight(110)
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.template = QLineEdit(DEFAULT_TEMPLATE)
        self.suffix_boxes = {s: QCheckBox(f"'{SUFFIXES[s].format(color='…').strip()}'") for s in SUFFIXES}
        for box in self.suffix_boxes.values():
            box.setChecked(True)

        self.style = QComboBox()
        self.style.addItems(STYLES)
        self.style.setCurrentText("circle")
        self.color = QComboBox()
        self.color.addItems(list(COLORS))
        self.line_width = QSpinBox()
        self.line_width.setRange(1, 10)
        apply_btn = QPushButton("Apply to selected markers")
        apply_btn.clicked.connect(self.apply_style_to_selected)

        self.model = ModelPicker()
        self.prompts_file = QLineEdit()
        self.prompts_file.setPlaceholderText("optional: learned prompts (.pt) from the VIP learn dock")
        self.classify_btn = QPushButton("Classify")
        self.classify_btn.clicked.connect(self.classify)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.bridge.cancel_all)
        self.cancel_btn.setEnabled(False)
        self.show_btn = QPushButton("Show what the model sees")
        self.show_btn.clicked.connect(self.show_model_view)
        self.save_btn = QPushButton("Save results…")
        self.save_btn.clicked.connect(lambda: self.save_results())
        self.save_btn.setEnabled(False)
        self.results = ProbabilityTable()

        prompts = QGroupBox("Findings and prompts")
        pf = QFormLayout(prompts)
        pf.addRow("image", self.image_combo)
        pf.addRow("window", self.window_preset)
        pf.addRow("findings", self.classes)
        pf.addRow("modality", self.modality)
        pf.addRow("template", self.template)
        for box in self.suffix_boxes.values():
            pf.addRow("", box)
        markers = QGroupBox("Markers (draw on the 'VIP markers' layer)")
        mf = QFormLayout(markers)
        mf.addRow("style", self.style)
        mf.addRow("colour", self.color)
        mf.addRow("line width", self.line_width)
        mf.addRow(apply_btn)
        model_box = QGroupBox("Model")
        mb = QVBoxLayout(model_box)
        mb.addWidget(self.model)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("learned prompts"))
        prow.addWidget(browse_row(self.prompts_file, self._browse_prompts))
        mb.addLayout(prow)
        buttons = QHBoxLayout()
        buttons.addWidget(self.classify_btn)
        buttons.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        for w in (prompts, markers, model_box):
            lay.addWidget(w)
        lay.addLayout(buttons)
        extra = QHBoxLayout()
        extra.addWidget(self.show_btn)
        extra.addWidget(self.save_btn)
        lay.addLayout(extra)
        lay.addWidget(self.status)
        lay.addWidget(self.results)

        self.bridge.busy_changed.connect(self._on_busy)
        self.bridge.died.connect(self._on_died)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()
        self.markers_layer()
        for sig in (self.classes.textChanged, self.template.textChanged, self.modality.currentTextChanged,
                    self.color.currentTextChanged, self.line_width.valueChanged, self.model.changed,
                    *(b.toggled for b in self.suffix_boxes.values())):
            sig.connect(lambda *_: self.publish_settings())
        self.publish_settings()

    def publish_settings(self) -> None:
        """Write this dock's findings, prompts, marker look and model into the viewer's shared settings."""
        try:
            model = self.model.spec()
        except VipInputError:
            model = None  # an incomplete choice: followers say so when they need it
        self.bridge.settings.update(
            "classify", findings=[c.strip() for c in self.classes.toPlainText().splitlines() if c.strip()],
            modality=self.modality.currentText(), template=self.template.text(),
            marker_text=tuple(s for s, b in self.suffix_boxes.items() if b.isChecked()),
            line_width=int(self.line_width.value()), color=self.color.currentText(), model=model,
            device=self.model.device_name())

    # -- layers ------------------------------------------------------------------------------------------------
    def _refresh_images(self, event=None) -> None:
        self.image_combo.refresh()
        layer = self.image_layer(required=False)
        if layer is not None and "vip_modality" in layer.metadata and event is not None:
            self._use_modality(layer.metadata["vip_modality"])

    def _use_modality(self, modality: str) -> None:
        self.modality.setCurrentText(modality)
        if modality in DEFAULT_FINDINGS:
            self.classes.setPlainText("\n".join(DEFAULT_FINDINGS[modality]))

    def image_layer(self, required: bool = True):
        """The chosen image layer (see :meth:`ImageLayerChooser.layer`)."""
        return self.image_combo.layer(required)

    def markers_layer(self):
        """The markers layer, created over the current image when missing; keeps arrows mirrored."""
        layer = ensure_markers_layer(self.viewer, self.image_layer(required=False))
        if layer is not self._hooked_markers:  # made here or by another dock: follow its edits either way
            layer.events.data.connect(self._on_markers_changed)
            self._hooked_markers = layer
        return layer

    def _on_markers_changed(self, event=None) -> None:
        layer = self.viewer.layers[MARKERS_LAYER] if MARKERS_LAYER in self.viewer.layers else None
        if layer is None:
            return
        action = getattr(event, "action", None)
        if action is not None and str(getattr(action, "value", action)) not in ("added", "changed"):
            return
        self._color_edges(layer)
        sync_arrows_layer(self.viewer, layer)

    def _color_edges(self, layer) -> None:
        """Edge colours follow the markers' colours; shapes without one take the dock's colour."""
        colors = [COLORS[shape_color(layer, i, self.color.currentText())] for i in range(len(layer.data))]
        if colors:
            layer.edge_color = np.asarray(colors, dtype=float) / 255.0

    def apply_window_preset(self, name: str) -> None:
        """Set the image layer's contrast limits to a CT preset (the display, and so the model input)."""
        from ..io.windows import apply_window_preset

        layer = self.image_layer(required=False)
        if layer is None or name not in WINDOW_PRESETS:
            return
        if getattr(layer, "rgb", False):
            self.status.setText("Window presets apply to gray images (CT in Hounsfield units), not colour.")
            return
        low, high = apply_window_preset(layer, name)
        self.status.setText(f"Window {name}: {low:g} to {high:g}.")

    def apply_style_to_selected(self) -> None:
        layer = self.markers_layer()
        sel = sorted(layer.selected_data)
        if not sel:
            self.status.setText("Select markers on the 'VIP markers' layer first (select tool, S).")
            return
        feats = layer.features
        for i in sel:
            feats.loc[i, "style"] = self.style.currentText()
            feats.loc[i, "color"] = self.color.currentText()
        layer.features = feats
        self._color_edges(layer)
        sync_arrows_layer(self.viewer, layer)

    # -- requests ----------------------------------------------------------------------------------------------
    def build_request(self) -> ClassifyRequest:
        """Read the dock and layers into a request; raises VipInputError for bad input."""
        layer = self.image_layer()
        image = model_input(layer, self.viewer.dims)
        markers_layer = self.markers_layer()
        self._color_edges(markers_layer)
        markers = markers_from_layer(markers_layer, layer, self.line_width.value(),
                                     default_color=self.color.currentText())
        prompts_path = self.prompts_file.text().strip() or None
        lines = self.classes.toPlainText().splitlines()
        classes = lines if prompts_path else check_classes(lines)  # learned prompts bring their classes
        template = self.template.text()
        check_template(template)
        return ClassifyRequest(image_rgb=image.rgb, markers=markers, classes=classes, model=self.model.spec(),
                               template=template, modality=self.modality.currentText(),
                               marker_text=tuple(s for s, b in self.suffix_boxes.items() if b.isChecked()),
                               include_baseline=True, device=self.model.device_name(), prompts_path=prompts_path,
                               notes=list(image.notes))

    def classify(self) -> int | None:
        """Send a classify request (the newest replaces a running one); returns the job id."""
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            from napari.utils.notifications import show_warning

            show_warning(str(exc))
            return None
        self.status.setText(f"Classifying {len(req.markers)} marker(s) + baseline…")
        self._job = self.bridge.submit(req, "VIP classify", self._on_result, self._on_error, channel="classify")
        return self._job

    def _browse_prompts(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        name, _ = QFileDialog.getOpenFileName(self, "Learned prompts", "", "Learned prompts (*.pt)")
        if name:
            self.prompts_file.setText(name)

    def _on_result(self, result) -> None:
        self.last_result = result
        self.results.show_result(result)
        self.save_btn.setEnabled(True)
        warn = untrained_prefix(result.provenance.untrained)
        self.status.setText(warn + "Done.")

    def save_results(self, path: str | None = None):
        """Write the last result (probabilities, prompts, markers, provenance) to a JSON file."""
        from ..io.results_json import export_results_json

        if self.last_result is None:
            return None
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(self, "Save classification", "vip-classify.json", "JSON (*.json)")
            if not path:
                return None
        d = self.last_result.to_dict()
        d["image"] = {"layer": self.image_combo.currentText()}
        out = export_results_json(path, d)
        self.status.setText(f"Saved {out}.")
        return out

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_btn.setEnabled(busy)

    def _on_died(self, message: str) -> None:
        self.status.setText(error_html(message))

    def show_model_view(self) -> None:
        """Add what the model sees for the selected (or first) marker as an RGB layer."""
        try:
            layer = self.image_layer()
            image = model_input(layer, self.viewer.dims)
            ml = self.markers_layer()
            markers = markers_from_layer(ml, layer, self.line_width.value(), selected_only=bool(ml.selected_data),
                                         default_color=self.color.currentText())
        except VipInputError as exc:
            self.status.setText(str(exc))
            return
        marker = markers[0] if markers else None
        rendered = render_marker(image.rgb, marker)
        name = MODEL_VIEW_LAYER
        if name in self.viewer.layers:
            self.viewer.layers[name].data = rendered
        else:
            self.viewer.add_image(rendered, name=name, rgb=True, visible=True)
