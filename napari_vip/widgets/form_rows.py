"""Small form pieces the docks share: a path field with a browse button, the device choice, a warning line,
buttons and rows."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget


def precision_combo():
    """A combo box of the precisions a model may run in (:data:`napari_vip.models.precision.PRECISIONS`), ``auto``
    first, with a tooltip on what ``auto`` picks."""
    from ..models.precision import PRECISIONS

    combo = QComboBox()
    combo.addItems(list(PRECISIONS))
    combo.setToolTip("auto: bfloat16 on CPUs with AMX or AVX-512-BF16, bfloat16/float16 on CUDA GPUs, else float32; "
                     "results record the precision used")
    return combo


def device_row(device, precision) -> QWidget:
    """The device combo and the precision combo side by side, without margins (one form row)."""
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(device, 2)
    lay.addWidget(QLabel("precision"))
    lay.addWidget(precision, 1)
    return row


def browse_row(edit, on_browse) -> QWidget:
    """``edit`` with a narrow "…" button after it that calls ``on_browse`` (which opens a file dialog).

    Parameters
    ----------
    edit : QLineEdit
        The path field; it stays the owner's attribute.
    on_browse : callable
        Called with no arguments when the button is clicked.

    Returns
    -------
    QWidget
        The row, without margins, to put into a form or a box layout.
    """
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit)
    button = QPushButton("…")
    button.setMaximumWidth(30)
    button.clicked.connect(lambda *_: on_browse())
    lay.addWidget(button)
    return row


def warning_label(html: str, lines: int = 2) -> QLabel:
    """A word-wrapped label for a warning such as "untrained model: random weights", at least ``lines`` lines
    high (napari's dock area does not grow a wrapped label by itself)."""
    label = QLabel(html)
    label.setWordWrap(True)
    label.setMinimumHeight(lines * label.fontMetrics().lineSpacing() + 4)
    return label


def button(text: str, slot) -> QPushButton:
    """A push button that calls ``slot()`` (no arguments) when clicked."""
    b = QPushButton(text)
    b.clicked.connect(lambda *_: slot())
    return b


def hbox(*widgets) -> QHBoxLayout:
    """A horizontal row of ``widgets``."""
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row
