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
    #: A dock's Cancel button, enabled while its own job runs (see :meth:`submit_job`).
    cancel_btn = None

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

    def submit_job(self, request, description: str, on_done, on_error, channel: str, on_progress=None) -> int:
        """Send ``request`` as this dock's current job: :attr:`cancel_btn` is enabled until ``on_done(result)`` or
        ``on_error(Failed)`` runs; returns the job id."""

        def finish(callback):
            def call(arg):
                self._job = None
                if self.cancel_btn is not None:
                    self.cancel_btn.setEnabled(False)
                callback(arg)
            return call

        self._job = self.bridge.submit(request, description, finish(on_done), finish(on_error), channel=channel,
                                       on_progress=on_progress)
        if self.cancel_btn is not None:
            self.cancel_btn.setEnabled(True)
        return self._job

    def cancel(self) -> None:
        """Cancel this dock's current job (it stops at its next progress step)."""
        if self._job is not None:
            self.bridge.cancel(self._job)

    def _warn(self, message: str, notify: bool = True) -> None:
        """Show ``message`` as a warning in the status line (and as a napari notification)."""
        self.status.setText(warning_html(message))
        if notify:
            from napari.utils.notifications import show_warning

            show_warning(message)
