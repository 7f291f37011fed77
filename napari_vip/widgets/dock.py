"""What every VIP dock opens with: the viewer, its worker bridge, a status line, the last result and job."""

from __future__ import annotations

from contextlib import contextmanager

from qtpy.QtWidgets import QLabel, QWidget

from .status_text import warning_html
from .worker_bridge import bridge_for


class VipDock(QWidget):
    """Base of the docks.

    Attributes
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
    bridge : WorkerBridge
        The viewer's one worker (shared by its docks).
    status : QLabel
        The dock's status line (rich text, wraps).
    last_result : object or None
        The newest result this dock showed.
    """

    last_result = None

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.bridge = bridge_for(napari_viewer)
        self._job = None
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._syncing = False

    @contextmanager
    def _quiet(self):
        """While inside, ``self._syncing`` is True: layers the dock adds do not trigger its own layer handlers."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _warn(self, message: str, notify: bool = True) -> None:
        """Show ``message`` as a warning in the status line (and as a napari notification)."""
        self.status.setText(warning_html(message))
        if notify:
            from napari.utils.notifications import show_warning

            show_warning(message)
