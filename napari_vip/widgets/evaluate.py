"""The "VIP evaluate" dock: the marker conditions evaluated on a labelled data set in the worker process.

Pick a CSV or a folder, tick conditions, run: the metrics table, the AUROC plot and the per-sample table
appear when the job is done; clicking a per-sample row opens that image with its marker in the viewer.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..core.coords import xy_to_rc
from ..core.errors import VipInputError
from ..core.eval_conditions import CONDITIONS, PAPER_CONDITIONS
from ..worker.evaluate import EvaluateRequest
from .dock import VipDock
from .form_rows import browse_row
from .model_picker import ModelPicker
from .status_text import show_failure, untrained_prefix, warning_html

METRIC_COLUMNS = ("auroc", "auprc", "accuracy", "balanced_accuracy", "mcc", "ece")


class EvaluateWidget(VipDock):
    """Dock: data, conditions, model and output folder; Evaluate runs in the worker process.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)

        self.data = QLineEdit()
        self.data.setPlaceholderText("CSV of path,label,x0,y0,x1,y1[,patient_id], or a folder of class folders")
        self.out = QLineEdit()
        self.out.setPlaceholderText("output folder (predictions.csv, metrics.json, metrics.csv, auroc.png)")
        self.checks = {name: QCheckBox(name) for name in CONDITIONS}
        for name, box in self.checks.items():
            box.setChecked(name in PAPER_CONDITIONS)
        self.checks["none"].setEnabled(False)  # the reference of the differences
        self.bootstrap = QSpinBox()
        self.bootstrap.setRange(0, 100000)
        self.bootstrap.setValue(1000)
        self.model = ModelPicker()
        self.run_btn = QPushButton("Evaluate")
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.metrics = QTableWidget(0, 1 + len(METRIC_COLUMNS))
        self.metrics.setHorizontalHeaderLabels(["condition", "AUROC [95% CI]", "AUPRC", "acc.", "bal. acc.", "MCC",
                                                "ECE"])
        self.metrics.verticalHeader().setVisible(False)
        self.plot = QLabel()
        self.plot.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.samples = QTableWidget(0, 5)
        self.samples.setHorizontalHeaderLabels(["id", "label", "condition", "predicted", "path"])
        self.samples.verticalHeader().setVisible(False)
        self.samples.cellDoubleClicked.connect(self.open_row)
        self.samples.cellClicked.connect(self.open_row)

        data_box = QGroupBox("Labelled data")
        df = QFormLayout(data_box)
        df.addRow("data", browse_row(self.data, self._browse_data))
        df.addRow("results to", browse_row(self.out, self._browse_out))
        df.addRow("bootstrap", self.bootstrap)
        cond_box = QGroupBox("Conditions")
        grid = QGridLayout(cond_box)
        for k, box in enumerate(self.checks.values()):
            grid.addWidget(box, k // 3, k % 3)
        model_box = QGroupBox("Model")
        QVBoxLayout(model_box).addWidget(self.model)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        for w in (data_box, cond_box, model_box):
            lay.addWidget(w)
        lay.addLayout(buttons)
        for w in (self.progress, self.status, self.metrics, self.plot, self.samples):
            lay.addWidget(w)

    def _browse_data(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "CSV of path,label,x0,y0,x1,y1", "", "CSV (*.csv)")
        if not name:
            name = QFileDialog.getExistingDirectory(self, "...or a folder with one sub-folder per class")
        if name:
            self.data.setText(name)

    def _browse_out(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Folder for the results")
        if name:
            self.out.setText(name)

    def build_request(self) -> EvaluateRequest:
        data, out = self.data.text().strip(), self.out.text().strip()
        if not data:
            raise VipInputError("Choose the labelled data: a CSV of path,label,x0,y0,x1,y1 or a folder of class "
                                "folders.")
        if not out:
            raise VipInputError("Choose a folder for the results (it also keeps the embeddings for reruns).")
        conditions = tuple(n for n, box in self.checks.items() if box.isChecked())
        return EvaluateRequest(data, self.model.spec(), conditions, out, bootstrap=self.bootstrap.value(),
                               device=self.model.device_name())

    def run(self) -> int | None:
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            return None
        self.status.setText("Evaluating…")
        self.progress.setValue(0)
        return self.submit_job(req, "VIP evaluate", self._on_result, self._on_error, channel="evaluate",
                               on_progress=self._on_progress)

    def _on_progress(self, msg) -> None:
        if msg.total:
            self.progress.setMaximum(msg.total)
            self.progress.setValue(msg.done)
        if msg.text:
            self.status.setText(msg.text)

    def _on_result(self, result) -> None:
        self.last_result = result
        self.show_result(result)

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)

    def show_result(self, result) -> None:
        """Fill the metrics table, the plot and the per-sample table."""
        self.metrics.setRowCount(len(result.conditions))
        for r, c in enumerate(result.conditions):
            m = result.metrics[c.name]
            lo, hi = m["ci"]["auroc"] or (float("nan"), float("nan"))
            auroc = "n/a" if m["auroc"] is None else f"{m['auroc']:.3f} [{lo:.3f}, {hi:.3f}]"
            cells = [c.name, auroc] + ["n/a" if m[k] is None else f"{m[k]:.3f}" for k in METRIC_COLUMNS[1:]]
            for col, text in enumerate(cells):
                self.metrics.setItem(r, col, QTableWidgetItem(text))
        self.metrics.resizeColumnsToContents()
        if result.files.get("plot"):
            self.plot.setPixmap(QPixmap(result.files["plot"]))
        rows = [(c, i) for c in result.conditions for i in range(len(result.samples))]
        self._rows = rows
        self.samples.setRowCount(len(rows))
        for r, (c, i) in enumerate(rows):
            s = result.samples[i]
            pred = result.classes[int(result.probabilities[c.name][i].argmax())]
            for col, text in enumerate((s.id, s.label, c.name, pred, s.path)):
                self.samples.setItem(r, col, QTableWidgetItem(text))
        self.samples.resizeColumnsToContents()
        skipped = f", {result.counts['skipped']} skipped" if result.counts.get("skipped") else ""
        self.status.setText(f"{untrained_prefix(result.provenance.untrained)}Done: {result.counts['evaluated']} "
                            f"samples{skipped}; files in {self.out.text().strip()}.")

    def open_row(self, row: int, _column: int = 0):
        """Open the row's image in the viewer with its box on the markers layer, in the condition's style."""
        from ..io.open_image import open_image
        from ..layers import ensure_markers_layer

        if self.last_result is None or not 0 <= row < len(getattr(self, "_rows", ())):
            return None
        cond, i = self._rows[row]
        sample = self.last_result.samples[i]
        data, kwargs = open_image(sample.path)
        kwargs.pop("metadata", None)
        kwargs["name"] = f"{sample.id} ({sample.label})"
        image = self.viewer.add_image(data, **kwargs)
        if sample.box_xyxy is not None and cond.style != "none":
            x0, y0, x1, y1 = sample.box_xyxy
            corners = xy_to_rc([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            markers = ensure_markers_layer(self.viewer, image)
            markers.add(corners, shape_type="ellipse" if cond.style == "circle" else "rectangle",
                        edge_color=cond.color)
            markers.features.loc[len(markers.features) - 1, ["style", "color"]] = [cond.style, cond.color]
        return image
