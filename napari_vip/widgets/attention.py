"""The "VIP attention" dock: where the model looks for one class, without and with each marker.

Thin: it reads the image, the 'VIP markers' layer and (when present) the VIP classify dock's findings,
prompts and model, sends an :class:`~napari_vip.worker.attention.AttentionRequest` to the worker and
writes heatmap Image layers plus a focus table.  Layers it made carry ``metadata['vip_attention']`` and
are replaced (updated, or removed when no longer part of the result) on every recompute; no other
layer is touched.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
)

from ..core.errors import VipInputError
from ..core.prompts import DEFAULT_MODALITY, DEFAULT_TEMPLATE, SUFFIXES, check_classes
from ..layers import MARKERS_LAYER, markers_from_layer, model_input
from ..models.attention import METHODS
from ..worker.attention import AttentionRequest, check_class
from .dock import VipDock
from .layer_choice import ImageLayerChooser
from .model_picker import ModelPicker
from .status_text import error_html, show_failure, untrained_prefix, warning_html

LAYER_PREFIX = "VIP attention"
COLORMAPS = ("inferno", "turbo")
DIFFERENCE = " - none"
TABLE_COLUMNS = ("condition", "p(class)", "cos", "focus in box", "box area", "x uniform")


def layer_name(class_name: str, method: str, condition: str) -> str:
    """``"VIP attention: pneumonia / rollout / 1: circle"``."""
    return f"{LAYER_PREFIX}: {class_name} / {method} / {condition}"


def diverging_colormap():
    """Blue (attention lost) - transparent (no change) - red (attention gained), for maps in [-1, 1]."""
    from napari.utils.colormaps import Colormap

    return Colormap([[0.1, 0.55, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.3, 0.1, 1.0]], controls=[0.0, 0.5, 1.0],
                    name="vip_attention_diverging")


class AttentionWidget(VipDock):
    """Dock: pick a class and a method, press Compute; heatmaps appear over the image.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self._placement = None

        self.image_combo = ImageLayerChooser(napari_viewer)
        self.follow = QCheckBox("use the VIP classify dock's findings, prompts and model")
        self.follow.setChecked(True)
        self.classes = QLineEdit("pneumonia, normal")
        self.classes.setToolTip("candidate findings, separated by commas")
        refresh = QToolButton()
        refresh.setText("↻")
        refresh.setToolTip("take the findings from the VIP classify dock")
        refresh.clicked.connect(self.refresh_classes)
        row = QHBoxLayout()
        row.addWidget(self.classes)
        row.addWidget(refresh)
        self.class_combo = QComboBox()
        self.class_combo.setEditable(True)
        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.opacity = QDoubleSpinBox()
        self.opacity.setRange(0.0, 1.0)
        self.opacity.setSingleStep(0.1)
        self.opacity.setValue(0.7)
        self.show_combo = QComboBox()
        self.show_combo.setToolTip("which map is visible (the others stay in the layer list, hidden)")
        self.model = ModelPicker()
        self.compute_btn = QPushButton("Compute")
        self.compute_btn.clicked.connect(self.compute)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.bridge.cancel_all)
        self.cancel_btn.setEnabled(False)
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)

        what = QGroupBox("What to explain")
        wf = QFormLayout(what)
        wf.addRow("image", self.image_combo)
        wf.addRow(self.follow)
        wf.addRow("findings", row)
        wf.addRow("class", self.class_combo)
        wf.addRow("method", self.method)
        look = QGroupBox("Display")
        lf = QFormLayout(look)
        lf.addRow("colormap", self.colormap)
        lf.addRow("opacity", self.opacity)
        lf.addRow("show", self.show_combo)
        self.model_box = QGroupBox("Model (when not following the classify dock)")
        QVBoxLayout(self.model_box).addWidget(self.model)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_btn)
        buttons.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        for w in (what, look, self.model_box):
            lay.addWidget(w)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(QLabel("Share of each map's mass inside the marker's box:"))
        lay.addWidget(self.table)

        self.classes.editingFinished.connect(self._fill_class_combo)
        self.follow.toggled.connect(self._on_follow)
        self.colormap.currentTextChanged.connect(self._restyle)
        self.opacity.valueChanged.connect(self._restyle)
        self.show_combo.currentTextChanged.connect(self._apply_visibility)
        self.bridge.busy_changed.connect(self.cancel_btn.setEnabled)
        self.bridge.died.connect(lambda msg: self.status.setText(error_html(msg)))
        self.viewer.layers.events.inserted.connect(self.image_combo.refresh)
        self.viewer.layers.events.removed.connect(self.image_combo.refresh)
        self.image_combo.refresh()
        self.bridge.settings.connect(self._on_settings)
        self.refresh_classes()
        self._on_follow(self.follow.isChecked())

    # -- the shared settings (written by the classify dock) ----------------------------------------------------
    def _following(self):
        """The viewer's :class:`~napari_vip.worker.viewer_settings.ViewerSettings` when following the classify
        dock's choices (and a classify dock has written them), else ``None``."""
        settings = self.bridge.settings
        return settings if self.follow.isChecked() and settings.source == "classify" else None

    def _on_settings(self, settings) -> None:
        self.refresh_classes()

    def _on_follow(self, on: bool) -> None:
        self.refresh_classes()

    def refresh_classes(self, fill_combo: bool = True) -> None:
        """Take the findings from the classify dock (when following and present) into the class list, and
        offer them in the class box (``fill_combo``; a class the user typed is kept otherwise)."""
        shared = self._following()
        self.model_box.setEnabled(shared is None)
        if shared is not None and shared.findings:
            self.classes.setText(", ".join(shared.findings))
        if fill_combo:
            self._fill_class_combo()

    def class_list(self) -> list[str]:
        return [c.strip() for c in self.classes.text().split(",") if c.strip()]

    def _fill_class_combo(self) -> None:
        current = self.class_combo.currentText()
        names = self.class_list()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItems(names)
        if current in names:
            self.class_combo.setCurrentText(current)
        self.class_combo.blockSignals(False)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.refresh_classes()
        super().showEvent(event)

    # -- layers ------------------------------------------------------------------------------------------------
    def image_layer(self):
        """The chosen image layer (see :meth:`ImageLayerChooser.layer`)."""
        return self.image_combo.layer()

    def attention_layers(self) -> list:
        """Layers this dock made (tagged ``metadata['vip_attention']``)."""
        return [layer for layer in self.viewer.layers if layer.metadata.get("vip_attention")]

    # -- requests ----------------------------------------------------------------------------------------------
    def build_request(self) -> AttentionRequest:
        """Read the dock and layers into a request; raises VipInputError for bad input."""
        shared = self._following()
        if shared is not None:
            self.refresh_classes(fill_combo=False)
        classes = check_classes(self.class_list())
        class_name, classes = check_class(self.class_combo.currentText(), classes)
        layer = self.image_layer()
        image = model_input(layer, self.viewer.dims)
        line_width, color = (shared.line_width, shared.color) if shared is not None else (1, "red")
        markers = []
        if MARKERS_LAYER in self.viewer.layers:
            markers = markers_from_layer(self.viewer.layers[MARKERS_LAYER], layer, line_width, default_color=color)
        if shared is not None:
            if shared.model is None:
                raise VipInputError("The classify dock's model choice is incomplete: choose its weights there, or "
                                    "untick 'use the VIP classify dock's findings, prompts and model'.")
            spec, device = shared.model, shared.device
            template, modality, marker_text = shared.template, shared.modality, shared.marker_text
        else:
            spec, device = self.model.spec(), self.model.device_name()
            template, modality, marker_text = DEFAULT_TEMPLATE, DEFAULT_MODALITY, tuple(SUFFIXES)
        self._placement = (tuple(float(v) for v in layer.scale[-2:]), tuple(float(v) for v in layer.translate[-2:]))
        return AttentionRequest(image_rgb=image.rgb, markers=markers, class_name=class_name, classes=classes,
                                method=self.method.currentText(), model=spec, template=template, modality=modality,
                                marker_text=marker_text, include_baseline=True, device=device,
                                notes=list(image.notes))

    def compute(self) -> int | None:
        """Send an attention request (the newest replaces a running one); returns the job id."""
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            from napari.utils.notifications import show_warning

            show_warning(str(exc))
            return None
        self.status.setText(f"Computing {req.method} maps for {req.class_name!r}: {len(req.markers)} marker(s) "
                            "+ no-marker baseline…")
        self._job = self.bridge.submit(req, "VIP attention", self.show_result, self._on_error, channel="attention")
        return self._job

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)

    # -- results -----------------------------------------------------------------------------------------------
    def show_result(self, result) -> None:
        """Write heatmap layers (replacing this dock's previous ones) and the focus table."""
        self.last_result = result
        scale, translate = self._placement or ((1.0, 1.0), (0.0, 0.0))
        wanted: dict[str, tuple[np.ndarray, dict]] = {}
        for cond in result.conditions:
            origin = np.asarray(cond.origin_rc, dtype=float)
            name = layer_name(result.class_name, result.method, cond.name)
            wanted[name] = (cond.heatmap, {"kind": "map", "condition": cond.name,
                                           "translate": tuple(np.asarray(translate) + origin * np.asarray(scale))})
        for cond in result.conditions:
            diff = result.difference(cond.name)
            if diff is not None:
                name = layer_name(result.class_name, result.method, cond.name + DIFFERENCE)
                wanted[name] = (diff, {"kind": "difference", "condition": cond.name + DIFFERENCE,
                                       "translate": tuple(translate)})
        for layer in self.attention_layers():
            if layer.name not in wanted:
                self.viewer.layers.remove(layer)
        for name, (data, info) in wanted.items():
            meta = {"vip_attention": True, "vip_attention_kind": info["kind"], "condition": info["condition"],
                    "class": result.class_name, "method": result.method,
                    "provenance": result.provenance.to_dict()}
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.scale, layer.translate = scale, info["translate"]
                layer.metadata.update(meta)
            else:
                layer = self.viewer.add_image(data, name=name, scale=scale, translate=info["translate"],
                                              metadata=meta)
            self._style(layer)
        self._fill_table(result)
        self._fill_show_combo(result, wanted)
        notes = list(result.notes) + [f"{c.name}: {n}" for c in result.conditions for n in c.notes]
        warn = untrained_prefix(result.provenance.untrained)
        self.status.setText(warn + "Done." + ("<br>" + "<br>".join(notes) if notes else ""))

    def _style(self, layer) -> None:
        if layer.metadata.get("vip_attention_kind") == "difference":
            layer.colormap = diverging_colormap()
            layer.contrast_limits = (-1.0, 1.0)
            layer.blending = "translucent"
        else:
            layer.colormap = self.colormap.currentText()
            layer.contrast_limits = (0.0, 1.0)
            layer.blending = "additive"
        layer.opacity = float(self.opacity.value())

    def _restyle(self, *_) -> None:
        for layer in self.attention_layers():
            self._style(layer)

    def _fill_show_combo(self, result, wanted) -> None:
        choices = [info["condition"] for _, info in wanted.values()]
        default = next((c.name for c in result.conditions if c.marker is not None), choices[0] if choices else "")
        self.show_combo.blockSignals(True)
        self.show_combo.clear()
        self.show_combo.addItems(choices + ["all"])
        self.show_combo.setCurrentText(default)
        self.show_combo.blockSignals(False)
        self._apply_visibility()

    def _apply_visibility(self, *_) -> None:
        chosen = self.show_combo.currentText()
        for layer in self.attention_layers():
            layer.visible = chosen == "all" or layer.metadata.get("condition") == chosen

    def _fill_table(self, result) -> None:
        self.table.setRowCount(len(result.conditions))
        for i, c in enumerate(result.conditions):
            f = c.focus
            cells = [c.name, f"{c.probability:.1%}", "" if c.score is None else f"{c.score:+.3f}",
                     "-" if f is None or f.fraction is None else f"{f.fraction:.1%}",
                     "-" if f is None else f"{f.area_fraction:.1%}",
                     "-" if f is None or f.enrichment is None else f"{f.enrichment:.2f}"]
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def focus_text(self, row: int) -> str:
        """The focus cell of a table row (for tests and accessibility)."""
        return self.table.item(row, 3).text()
