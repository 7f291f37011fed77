"""Per-class probability bars for each condition, side by side, with the prompts used."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QHeaderView, QLabel, QPlainTextEdit, QProgressBar, QTableWidget, QVBoxLayout, QWidget


class ProbabilityTable(QWidget):
    """Rows: classes.  Columns: conditions (no marker, then each marker).  Cells: bars with percentages."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.prompts = QPlainTextEdit()
        self.prompts.setReadOnly(True)
        self.prompts.setMaximumHeight(90)
        self.prompts.setPlaceholderText("Prompts used appear here.")
        self.provenance = QLabel("")
        self.provenance.setWordWrap(True)
        self.provenance.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)
        lay.addWidget(self.prompts)
        lay.addWidget(self.provenance)

    def show_result(self, result) -> None:
        """Fill from a :class:`~napari_vip.worker.classify.ClassifyResult`."""
        classes, conds = result.classes, result.conditions
        self.table.clear()
        self.table.setRowCount(len(classes))
        self.table.setColumnCount(len(conds))
        self.table.setHorizontalHeaderLabels([c.name for c in conds])
        self.table.setVerticalHeaderLabels(classes)
        for j, cond in enumerate(conds):
            best = int(cond.probabilities.argmax())
            for i, p in enumerate(cond.probabilities):
                bar = QProgressBar()
                bar.setRange(0, 1000)
                bar.setValue(int(round(float(p) * 1000)))
                bar.setFormat(f"{float(p):.1%}")
                bar.setTextVisible(True)
                if i == best:
                    bar.setStyleSheet("QProgressBar::chunk { background-color: #d9534f; }")
                self.table.setCellWidget(i, j, bar)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        rows_height = self.table.horizontalHeader().height() + 24 * len(classes) + 4
        self.table.setMaximumHeight(rows_height + self.table.horizontalScrollBar().sizeHint().height())
        lines = []
        for cond in conds:
            lines.append(f"[{cond.name}] " + " | ".join(cond.prompts))
        self.prompts.setPlainText("\n".join(lines + [f"note: {n}" for n in result.notes]))
        prov = result.provenance
        sha = (prov.weights_sha256 or "none")[:12]
        self.provenance.setText(f"{prov.model.get('arch')} on {prov.device}; weights sha256 {sha}; "
                                f"napari-vip {prov.package_version}")

    def cell_text(self, row: int, col: int) -> str:
        """The percentage shown in a cell (for tests and accessibility)."""
        return self.table.cellWidget(row, col).text()
