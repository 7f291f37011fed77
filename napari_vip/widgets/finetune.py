"""The "VIP finetune" dock: fine-tune a VLSM (medvlsm's recipe or CoTexNet) on a data set in the worker, the GUI
twin of ``napari-vip finetune``, with a live plot of train loss and validation Dice per epoch, Cancel and resume,
and for CoTexNet an editable table of the attribute sentences it trains on."""

from __future__ import annotations

import math
from pathlib import Path

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import VipInputError
from .dock import VipDock
from .form_rows import browse_row
from .status_text import show_failure, warning_html

#: Series of the plot: an epoch record's key -> colour (loss on the left scale from 0, Dice on 0..1).
SERIES = {"train_loss": QColor("#e8a33d"), "val_loss": QColor("#d9534f"), "train_dice": QColor("#5cb85c"),
          "val_dice": QColor("#5bc0de")}
#: The sources of the starting weights.
SOURCES = ("released weights", "checkpoint folder / file", "untrained (random weights)")
#: File name of the edited sentence table, in the output folder.
SENTENCES_CSV = "sentences.csv"


class FinetunePlot(QWidget):
    """Train/validation loss (left scale, from 0) and Dice (0..1) per epoch; ``points[name]`` is a list of
    ``(epoch, value)`` (epochs from 1)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.epochs = 1
        self.setMinimumHeight(160)

    def clear(self) -> None:
        self.points.clear()
        self.epochs = 1
        self.update()

    def add(self, record: dict, epochs: int | None = None) -> None:
        """``record``: an epoch's record of :func:`napari_vip.models.vlsm.finetune.finetune` (``epoch`` from 1,
        ``train_loss``, ``train_dice``, ``val_loss``, ``val_dice``); ``epochs``: the most epochs of the run."""
        epoch = int(record["epoch"])
        self.epochs = max(self.epochs, epoch, int(epochs or 0))
        for name in SERIES:
            if name in record and record[name] is not None:
                pts = [p for p in self.points.get(name, []) if p[0] != epoch]  # a resumed epoch replaces its point
                self.points[name] = sorted(pts + [(epoch, float(record[name]))])
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h, m = self.width(), self.height(), 28
        p.fillRect(self.rect(), QColor("#262930"))
        p.setPen(QPen(QColor("#888888"), 1))
        p.drawRect(m, 8, w - m - 8, h - m - 8)
        losses = [v for n, pts in self.points.items() if "loss" in n for _, v in pts if not math.isnan(v)]
        top = max(losses) * 1.05 if losses and max(losses) > 0 else 1.0
        p.drawText(2, 16, f"{top:.2g}")
        p.drawText(2, h - m, "0")
        p.drawText(m, h - 8, "epoch 1")
        p.drawText(w - 70, h - 8, f"epoch {self.epochs}")
        x_span, y_span = max(self.epochs - 1, 1), h - m - 16
        for name, pts in self.points.items():
            scale = top if "loss" in name else 1.0
            p.setPen(QPen(SERIES[name], 2))
            xy = [QPointF(m + (e - 1) / x_span * (w - m - 8), 8 + y_span * (1 - min(v / scale, 1.0)))
                  for e, v in pts if not math.isnan(v)]
            for a, b in zip(xy, xy[1:]):
                p.drawLine(a, b)
            for pt in xy:
                p.drawEllipse(pt, 2, 2)
        x = m + 60  # the legend between the epoch labels, under the axes (not over the lines)
        for name, color in SERIES.items():
            p.setPen(color)
            p.drawText(x, h - 8, name)
            x += 7 * len(name) + 10
        p.setPen(QColor("#888888"))
        p.drawText(w - 40, 20, "Dice 1")
        p.end()


class FinetuneWidget(VipDock):
    """Dock: data set, model, method, recipe and output folder; Train runs ``FinetuneRequest`` in the worker.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    #: Where the encoder's activations are stored (``None``: the user cache; ``""``: memory only).
    activations: str | None = None

    def __init__(self, napari_viewer, parent=None):
        super().__init__(napari_viewer, parent)
        from ..models.device import DEVICES
        from ..models.vlsm.spec import FAMILIES

        self.data = QLineEdit()
        self.data.setPlaceholderText("medvlsm folder (images/, masks/, anns/) or a CSV (image, mask, prompt, split)")
        self.out = QLineEdit()
        self.out.setPlaceholderText("output folder (resumed from when it holds an interrupted run)")
        self.family = QComboBox()
        self.family.addItems(list(FAMILIES))
        self.source = QComboBox()
        self.source.addItems(list(SOURCES))
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("Hugging Face folder, .safetensors, finetune output or hub id")
        self.config = QLineEdit()
        self.config.setPlaceholderText("architecture JSON (untrained / .safetensors; optional)")
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.method = QComboBox()
        self.method.addItems(["vlsm", "cotexnet"])
        self.prompt = QComboBox()
        self.prompt.addItem("the recipe's (p6)", None)
        for name in [f"p{i}" for i in range(10)] + ["random"]:
            self.prompt.addItem(name, name)
        self.prompt.setToolTip("medvlsm's prompt type: p0 (no text) ... p9, or random (any but p0, drawn per sample)")
        self.keyword = QLineEdit()
        self.keyword.setPlaceholderText('what the region is, e.g. "polyp area"')
        self.attributes = QComboBox()
        self.attributes.addItems(["mask", "llm"])
        self.attributes.setToolTip("mask: attributes measured from the masks; llm: asked of the multimodal model "
                                   "($NAPARI_VIP_LLM_URL, $NAPARI_VIP_LLM_MODEL)")
        self.epochs, self.batch, self.lr = QLineEdit(), QLineEdit(), QLineEdit()  # blank: the method's recipe
        self.resume = QCheckBox("resume an interrupted run in the output folder")
        self.resume.setChecked(True)
        self.train_btn = QPushButton("Train")
        self.train_btn.clicked.connect(self.train)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.sentences_btn = QPushButton("Make sentences")
        self.sentences_btn.setToolTip("measure (or ask) the region attributes of the training images; edit the "
                                      "sentences in the table before training")
        self.sentences_btn.clicked.connect(self.make_sentences)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["image", "sentence"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.plot = FinetunePlot()

        data_box = QGroupBox("Data set")
        df = QFormLayout(data_box)
        df.addRow("data", browse_row(self.data, self._browse_data))
        df.addRow("output", browse_row(self.out, self._browse_out))
        model_box = QGroupBox("Start from")
        mf = QFormLayout(model_box)
        mf.addRow("family", self.family)
        mf.addRow("weights", self.source)
        mf.addRow("checkpoint", browse_row(self.checkpoint, self._browse_checkpoint))
        mf.addRow("config", browse_row(self.config, self._browse_config))
        mf.addRow("device", self.device)
        train_box = QGroupBox("Training")
        tf = QFormLayout(train_box)
        tf.addRow("method", self.method)
        tf.addRow("prompt type", self.prompt)
        tf.addRow("keyword", self.keyword)
        tf.addRow("attributes", self.attributes)
        tf.addRow("epochs", self.epochs)
        tf.addRow("batch size", self.batch)
        tf.addRow("learning rate", self.lr)
        tf.addRow(self.resume)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_btn)
        buttons.addWidget(self.cancel_btn)
        buttons.addWidget(self.sentences_btn)
        lay = QVBoxLayout(self)
        for w in (data_box, model_box, train_box):
            lay.addWidget(w)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.plot)
        lay.addWidget(self.table)
        self.method.currentTextChanged.connect(self._method_changed)
        self.family.currentTextChanged.connect(lambda _: self._method_changed(self.method.currentText()))
        self.source.currentTextChanged.connect(self._source_changed)
        self._method_changed(self.method.currentText())
        self._source_changed(self.source.currentText())

    # -- inputs ------------------------------------------------------------------------------------------------
    def _method_changed(self, method: str) -> None:
        cotexnet = method == "cotexnet"
        self.prompt.setEnabled(not cotexnet)
        for w in (self.keyword, self.attributes, self.sentences_btn):
            w.setEnabled(cotexnet)
        self.table.setVisible(cotexnet)
        from ..models.vlsm.finetune import Recipe
        from ..worker.finetune import method_recipe

        r = Recipe.released(self.family.currentText(), **method_recipe(method))
        self.epochs.setPlaceholderText(f"blank: the recipe's ({r.epochs}, early stop {r.early_stop_patience})")
        self.batch.setPlaceholderText(f"blank: the recipe's ({r.batch_size})")
        self.lr.setPlaceholderText(f"blank: the recipe's ({r.lr:g})")

    def _source_changed(self, source: str) -> None:
        self.checkpoint.setEnabled(source == SOURCES[1])

    def _browse_data(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Data set folder (images/, masks/, anns/)")
        if not name:
            name, _ = QFileDialog.getOpenFileName(self, "...or a CSV", "", "CSV (*.csv)")
        if name:
            self.data.setText(name)

    def _browse_out(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Output folder")
        if name:
            self.out.setText(name)

    def _browse_checkpoint(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Starting weights (a folder)")
        if not name:
            name, _ = QFileDialog.getOpenFileName(self, "...or a .safetensors file", "", "Weights (*.safetensors)")
        if name:
            self.checkpoint.setText(name)

    def _browse_config(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Architecture JSON", "", "JSON (*.json)")
        if name:
            self.config.setText(name)

    def _number(self, edit: QLineEdit, kind, label: str):
        text = edit.text().strip()
        if not text:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise VipInputError(f"The {label} {text!r} is not a number; leave it blank for the recipe's.") from None
        if value <= 0:
            raise VipInputError(f"The {label} must be positive (got {text}); leave it blank for the recipe's.")
        return value

    def _data_path(self) -> str:
        data = self.data.text().strip()
        if not data:
            raise VipInputError("Choose the data set: a folder in medvlsm's layout (images/, masks/, anns/) or a CSV.")
        if not Path(data).exists():
            raise VipInputError(f"The data set {data!r} does not exist; choose a medvlsm folder or a CSV.")
        return data

    def spec(self):
        """The starting weights as a :class:`~napari_vip.models.vlsm.VlsmSpec`."""
        from ..models.vlsm import VlsmSpec
        from ..models.vlsm.spec import DEFAULT_SOURCES

        family, source = self.family.currentText(), self.source.currentText()
        config = self.config.text().strip() or None
        if source == SOURCES[2]:
            return VlsmSpec(family, untrained=True, config=config)
        if source == SOURCES[1]:
            path = self.checkpoint.text().strip()
            if not path:
                raise VipInputError("Choose the starting checkpoint (a folder, .safetensors or hub id), or pick "
                                    "released weights.")
            return VlsmSpec(family, source=path, config=config)
        return VlsmSpec(family, source=DEFAULT_SOURCES[family], config=config)

    def _llm(self):
        if self.attributes.currentText() != "llm":
            return None
        from ..models.llm_descriptors import LlmConfig

        return LlmConfig.from_env()

    def build_request(self):
        """The :class:`~napari_vip.worker.finetune.FinetuneRequest` the form describes (raises
        :class:`VipInputError` on bad input).  For CoTexNet with a sentence table, the table is written to
        ``<out>/sentences.csv`` and passed as the sentences."""
        from ..worker.finetune import FinetuneRequest

        data = self._data_path()
        out = self.out.text().strip()
        if not out:
            raise VipInputError("Choose the output folder (the fine-tuned model is written there).")
        recipe = {"epochs": self._number(self.epochs, int, "number of epochs"),
                  "batch_size": self._number(self.batch, int, "batch size"),
                  "lr": self._number(self.lr, float, "learning rate")}
        method = self.method.currentText()
        options = {}
        if method == "vlsm":
            recipe["prompt"] = self.prompt.currentData()
        else:
            keyword = self.keyword.text().strip() or None
            options = {"keyword": keyword, "attributes": self.attributes.currentText(), "llm": self._llm()}
            if self.table.rowCount():
                options["sentences"] = str(self.write_sentences(Path(out) / SENTENCES_CSV))
            elif keyword is None:
                raise VipInputError("CoTexNet needs the keyword naming the region (e.g. \"polyp area\"), or "
                                    "sentences made with Make sentences.")
        return FinetuneRequest(data, self.spec(), out, method=method, method_options=options,
                               recipe={k: v for k, v in recipe.items() if v is not None},
                               activations=self.activations, resume=self.resume.isChecked(),
                               device=self.device.currentText())

    # -- sentences ---------------------------------------------------------------------------------------------
    def sentence_rows(self) -> list[tuple[str, str]]:
        """``[(sample_id, sentence)]`` as the table shows them (edits included)."""
        rows = []
        for r in range(self.table.rowCount()):
            sid, sentence = (self.table.item(r, c) for c in (0, 1))
            rows.append((sid.text() if sid else "", sentence.text().strip() if sentence else ""))
        return rows

    def write_sentences(self, path) -> Path:
        """Write the table to the sentence CSV ``path`` (columns of ``napari-vip sentences``: the measured
        attributes are kept for rows whose sentence was not edited)."""
        from ..core.region_attributes import SentenceRow, write_sentence_csv

        made = getattr(self, "_made", {})
        rows = []
        for sid, sentence in self.sentence_rows():
            if not sentence:
                raise VipInputError(f"The sentence of {sid!r} is empty; write one or make the sentences again.")
            old = made.get(sid)
            rows.append(SentenceRow(sid, sentence, old.attributes if old and old.sentence == sentence else None))
        return write_sentence_csv(path, rows)

    def make_sentences(self) -> int | None:
        """Run :class:`~napari_vip.worker.region_sentences.RegionSentencesRequest` on the train split; the rows
        fill the table."""
        from ..worker.region_sentences import RegionSentencesRequest

        try:
            data = self._data_path()
            keyword = self.keyword.text().strip()
            if not keyword:
                raise VipInputError("Give the keyword naming the region (e.g. \"polyp area\") to make sentences.")
            req = RegionSentencesRequest(data, keyword, split="train", attributes=self.attributes.currentText(),
                                         llm=self._llm())
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            return None
        self.status.setText("Making sentences…")
        return self.submit_job(req, "VIP sentences", self._on_sentences, self._on_error, channel="finetune",
                               on_progress=lambda msg: self.status.setText(msg.text))

    def _on_sentences(self, result) -> None:
        self._made = {r.sample_id: r for r in result.rows}
        self.table.setRowCount(len(result.rows))
        for i, row in enumerate(result.rows):
            sid = QTableWidgetItem(row.sample_id)
            sid.setFlags(sid.flags() & ~Qt.ItemIsEditable)  # the image id is not editable
            self.table.setItem(i, 0, sid)
            self.table.setItem(i, 1, QTableWidgetItem(row.sentence))
        self.table.resizeColumnToContents(0)
        self.table.setVisible(True)
        notes = "".join(f"<br>{n}" for n in result.notes)
        self.status.setText(f"{len(result.rows)} sentences ({result.attributes}); edit them, then Train.{notes}")

    # -- training ----------------------------------------------------------------------------------------------
    def train(self) -> int | None:
        try:
            req = self.build_request()
        except VipInputError as exc:
            self.status.setText(warning_html(exc))
            return None
        self.plot.clear()
        self._epochs = req.recipe.get("epochs")
        self.status.setText("Training…")
        return self.submit_job(req, "VIP finetune", self._on_result, self._on_error, channel="finetune",
                               on_progress=self.on_progress)

    def on_progress(self, msg) -> None:
        """A progress message: an epoch's record (``data["epoch"]``) goes to the plot."""
        record = (msg.data or {}).get("epoch")
        if record is not None:
            self.plot.add(record, msg.total or None)
        if msg.text:
            self.status.setText(msg.text)

    def _on_result(self, result) -> None:
        self.last_result = result
        self.plot.clear()
        for record in result.history:
            self.plot.add(record, result.recipe.get("epochs"))
        best = "" if result.best_epoch is None else \
            f" Best validation Dice {result.best_val_dice:.3f} at epoch {result.best_epoch}."
        resumed = "" if result.resumed_from is None else f" Resumed after epoch {result.resumed_from}."
        notes = "".join(f"<br>{n}" for n in result.notes)
        self.status.setText(f"Done ({result.method}): {len(result.history)} epochs on {result.n_train} images "
                            f"(validation {result.n_val}); {result.stopped}.{best}{resumed} Saved to "
                            f"{result.out_dir}; choose it as the VLSM checkpoint in the segment dock.{notes}")

    def _on_error(self, failed) -> None:
        show_failure(self.status, failed)
