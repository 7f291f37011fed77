"""The "VIP learn" dock: learn ViP/CoOp prompts on labelled images in the worker, with a live plot."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import VipInputError
from ..models.training import PRESETS, TrainConfig
from ..worker.learn import LearnRequest
from .dock import VipDock
from .form_rows import browse_row
from .model_picker import ModelPicker
from .status_text import show_failure, untrained_prefix, warning_html

SERIES = {"loss": QColor("#e8a33d"), "acc": QColor("#5cb85c"), "val_loss": QColor("#d9534f"),
          "val_acc": QColor("#5bc0de")}


class TrainingPlot(QWidget):
    """Loss (left scale, from 0) and accuracy (0..1) per epoch, one line per series and method."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.epochs = 1
        self.setMinimumHeight(150)

    def clear(self) -> None:
        self.points.clear()
        self.update()

    def add(self, record: dict) -> None:
        """``record``: an epoch's numbers (:func:`~napari_vip.models.training.epoch_data`)."""
        self.epochs = max(self.epochs, int(record["epochs"]))
        for name in SERIES:
            if name in record:
                self.points.setdefault((record["method"], name), []).append((record["epoch"], record[name]))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h, m = self.width(), self.height(), 28
        p.fillRect(self.rect(), QColor("#262930"))
        p.setPen(QPen(QColor("#888888"), 1))
        p.drawRect(m, 8, w - m - 8, h - m - 8)
        losses = [v for (_, n), pts in self.points.items() if "loss" in n for _, v in pts]
        top = max(losses) * 1.05 if losses else 1.0
        p.drawText(2, 16, f"{top:.2g}")
        p.drawText(2, h - m, "0")
        p.drawText(m, h - 8, "epoch 1")
        p.drawText(w - 70, h - 8, f"epoch {self.epochs}")
        x_span, y_span = max(self.epochs - 1, 1), h - m - 16
        for (method, name), pts in self.points.items():
            scale = top if "loss" in name else 1.0
            pen = QPen(SERIES[name], 2, Qt.SolidLine if method == "vip" else Qt.DashLine)
            p.setPen(pen)
            xy = [QPointF(m + (e - 1) / x_span * (w - m - 8), 8 + y_span * (1 - min(v / scale, 1.0)))
                  for e, v in pts if not math.isnan(v)]
            for a, b in zip(xy, xy[1:]):
                p.drawLine(a, b)
            for pt in xy:
                p.drawEllipse(pt, 2, 2)
        x = m + 4
        for name, color in SERIES.items():
            p.setPen(color)
            p.drawText(x, 22, name)
            x += 8 * len(name) + 10
        p.end()


class LearnWidget(VipDock):
    """Dock: labelled data, model, descriptors, method and epochs; Train runs in the worker process.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)

        self.data = QLineEdit()
        self.data.setPlaceholderText("folder of class folders, or a CSV of path,label[,x0,y0,x1,y1]")
        self.descriptors = QLineEdit()
        self.descriptors.setPlaceholderText("symptom library JSON (empty: bundled + yours)")
        self.out = QLineEdit()
        self.out.setPlaceholderText("learned prompts file (.pt)")
        self.method = QComboBox()
        self.method.addItems(["vip", "coop"])
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setToolTip("project: for small data sets (at least 200 steps, cached features); released: the "
                               "released ViP configs (50 epochs, random resized crops and flips every epoch, one "
                               "pass per epoch, float16 on a GPU). Choosing one fills epochs, rate and batch.")
        self.preset.currentTextChanged.connect(self._apply_preset)
        self.compare = QCheckBox("also train the other method (comparison)")
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(4)
        self.lr.setRange(0.0001, 10.0)
        self.lr.setSingleStep(0.001)
        self.lr.setValue(0.002)
        self.batch = QSpinBox()
        self.batch.setRange(1, 4096)
        self.batch.setValue(32)
        self.class_specific = QCheckBox("class-specific context")
        self.model = ModelPicker()
        self.train_btn = QPushButton("Train")
        self.train_btn.clicked.connect(self.train)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.plot = TrainingPlot()
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["method", "accuracy", "balanced acc.", "macro AUROC"])
        self.table.verticalHeader().setVisible(False)

        data_box = QGroupBox("Labelled images")
        df = QFormLayout(data_box)
        df.addRow("data", browse_row(self.data, self._browse_data))
        df.addRow("descriptors", browse_row(self.descriptors, self._browse_library))
        df.addRow("save to", browse_row(self.out, self._browse_out))
        train_box = QGroupBox("Training")
        tf = QFormLayout(train_box)
        tf.addRow("method", self.method)
        tf.addRow("recipe", self.preset)
        tf.addRow("epochs", self.epochs)
        tf.addRow("learning rate", self.lr)
        tf.addRow("batch size", self.batch)
        tf.addRow(self.class_specific)
        tf.addRow(self.compare)
        model_box = QGroupBox("Model (frozen)")
        QVBoxLayout(model_box).addWidget(self.model)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_btn)
        buttons.addWidget(self.cancel_btn)
        lay = QVBoxLayout(self)
        for w in (data_box, train_box, model_box):
            lay.addWidget(w)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.plot)
        lay.addWidget(self.table)

    # -- inputs ------------------------------------------------------------------------------------------------
    def _apply_preset(self, name: str) -> None:
        """Fill epochs, learning rate, batch size and class-specific context with the recipe's values."""
        cfg = TrainConfig.preset_values(name)
        self.epochs.setValue(cfg["epochs"])
        self.lr.setValue(cfg["lr"])
        self.batch.setValue(cfg["batch_size"])
        self.class_specific.setChecked(cfg["class_specific"])

    def _browse_data(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Folder with one sub-folder per class")
        if not name:
            name, _ = QFileDialog.getOpenFileName(self, "...or a CSV of path,label", "", "CSV (*.csv)")
        if name:
            self.data.setText(name)

    def _browse_library(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Symptom library", "", "JSON (*.json)")
        if name:
            self.descriptors.setText(name)

    def _browse_out(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Save learned prompts", "prompts.pt", "Prompts (*.pt)")
        if name:
            self.out.setText(name)

    def build_request(self) -> LearnRequest:
        data = self.data.text().strip()
        if not data:
            raise VipInputError("Choose the labelled images: a folder with one sub-folder per class, or a CSV.")
        config = {"epochs": self.epochs.value(), "lr": self.lr.value(), "batch_size": self.batch.value(),
                  "class_specific": self.class_specific.isChecked()}
        return LearnRequest(data, self.model.spec(), self.out.text().strip() or None, self.method.currentText(),
                            self.compare.isChecked(), descriptors_path=self.descriptors.text().strip(),
                            config=config, preset=self.preset.currentText(), device=self.model.device_name())

    # -- running -----------------------------------------------------------------------------------------------
    def train(self) -> int | None:
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            return None
        self.plot.clear()
        self.table.setRowCount(0)
        self.status.setText("Training…")
        return self.submit_job(req, "VIP learn", self._on_result, self._on_error, channel="learn",
                               on_progress=self.on_progress)

    def on_progress(self, msg) -> None:
        """A progress message: an epoch's record (its ``data["epoch"]``) goes to the plot."""
        record = (msg.data or {}).get("epoch")
        if record is not None:
            self.plot.add(record)
            self.status.setText(msg.text)

    def _on_result(self, result) -> None:
        self.last_result = result
        self.show_evaluation(result.evaluation)
        if not self.plot.points:
            from ..models.training import EpochRecord, epoch_data

            for method, hist in result.histories.items():
                for r in hist:
                    self.plot.add(epoch_data(method, EpochRecord(**r), len(hist)))
        warn = untrained_prefix(result.provenance.untrained)
        saved = f" Saved to {result.out}; choose it in the classify dock." if result.out else " (not saved)"
        notes = "".join(f"<br>{n}" for n in result.notes)
        self.status.setText(f"{warn}Done: evaluated on {result.split['evaluated_on']} "
                            f"({result.split['val'] or result.split['train']} images).{saved}{notes}")

    def show_evaluation(self, evaluation: dict) -> None:
        self.table.setRowCount(len(evaluation))
        for r, (name, m) in enumerate(evaluation.items()):
            cells = [name] + [f"{m[k]:.3f}" for k in ("accuracy", "balanced_accuracy", "auroc_macro")]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)
