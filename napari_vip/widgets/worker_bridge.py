"""Connects a :class:`~napari_vip.worker.client.WorkerClient` to the Qt event loop and napari's progress bars.

One bridge (one worker process) per viewer, shared by the docks so a model is loaded once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer, Signal

from ..worker.client import WorkerClient
from ..worker.protocol import Failed, Progress


class WorkerBridge(QObject):
    """Polls the worker from a Qt timer on the GUI thread; shows a cancelable progress bar per job.

    Signals
    -------
    died(str)
        The worker process ended unexpectedly; the message says so and that layers are untouched.
    busy_changed(bool)
    """

    died = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self, client: WorkerClient | None = None, interval_ms: int = 25, parent=None):
        super().__init__(parent)
        self.client = client or WorkerClient()
        from ..worker.viewer_settings import ViewerSettings

        #: What the viewer's docks share (findings, prompts, marker look, CLIP model).
        self.settings = ViewerSettings()
        self.client.on_worker_died = self.died.emit
        self.died.connect(_show_death)
        self._bars: dict[int, object] = {}
        self._busy = False
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._poll)
        self.remote = None  # a RemoteClient once a request goes to a model server
        self._remote_target = None

    def start(self) -> None:
        """Start the worker now (it also starts on the first request)."""
        self._closed = False
        self.client.start()
        self._timer.start()

    def submit(self, request, description: str, on_done: Callable, on_error: Callable,
               channel: str | None = None, on_progress: Callable | None = None) -> int:
        """Send ``request``; ``on_done(result)`` or ``on_error(Failed)`` run later on the GUI thread.

        Jobs on the same ``channel`` replace each other (newest wins): a replaced job's callbacks never run.
        ``on_progress(Progress)`` also sees each progress message (the bar is updated either way).
        """
        job_id = None

        def finish(cb):
            def call(arg):
                self._close_bar(job_id)
                if not owner_deleted(cb):  # a dock closed while its job ran: nothing left to show it in
                    cb(arg)
                self._update_busy()
            return call

        client, request = self._client_for(request, channel)
        if channel is not None:  # the replaced job's bar goes away with it
            old = client.latest(channel)
            if old is not None:
                self._close_bar(old)
        job_id = client.submit(request, channel, on_done=finish(on_done), on_error=finish(on_error),
                               on_progress=lambda msg: self._progress(msg, description, on_progress))
        self._closed = False
        self._timer.start()
        self._update_busy()
        return job_id

    def cancel(self, job_id: int) -> None:
        for client in self._clients():
            client.cancel(job_id)

    def cancel_all(self) -> None:
        for client in self._clients():
            for job_id in client.pending():
                client.cancel(job_id)

    # -- remote server -----------------------------------------------------------------------------------------
    def _clients(self) -> list:
        return [self.client] + ([self.remote] if self.remote is not None else [])

    def _client_for(self, request, channel):
        """The local worker, or for a request whose device is "remote server…" the server's client (made or
        remade for the chosen URL and token); a channel's job on the other client is cancelled (newest wins)."""
        from .remote_server import REMOTE_DEVICE, SETTINGS

        if getattr(request, "device", None) != REMOTE_DEVICE:
            client, other = self.client, self.remote
        else:
            import dataclasses
            import itertools

            from ..serve.remote_client import RemoteClient

            target = (SETTINGS.url, SETTINGS.token)
            if self.remote is None or self._remote_target != target:
                if self.remote is not None:
                    self.remote.shutdown()
                self.remote = RemoteClient(SETTINGS.url, SETTINGS.token, on_worker_died=self.died.emit,
                                           ids=itertools.count(1_000_000_001))
                self._remote_target = target
            client, other = self.remote, self.client
            request = dataclasses.replace(request, device="auto")  # the server runs on its own device
        old = other.latest(channel) if (other is not None and channel is not None) else None
        if old is not None and old in other.pending():
            other.cancel(old)
        return client, request

    def shutdown(self) -> None:
        """Stop polling, close progress bars and end the worker; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        try:
            self._timer.stop()
        except RuntimeError:  # the Qt side is already gone at application exit
            pass
        for job_id in list(self._bars):
            self._close_bar(job_id)
        for client in self._clients():
            client.shutdown()

    # -- internals ---------------------------------------------------------------------------------------------
    def _poll(self) -> None:
        for client in self._clients():
            client.poll()
        if not any(c.busy for c in self._clients()) and not self.client.alive:
            self._timer.stop()
        self._update_busy()

    def _update_busy(self) -> None:
        busy = any(c.busy for c in self._clients())
        if busy != self._busy:
            self._busy = busy
            self.busy_changed.emit(self._busy)

    def _progress(self, msg: Progress, description: str, listener: Callable | None = None) -> None:
        from napari.utils import cancelable_progress

        if listener is not None:
            listener(msg)

        bar = self._bars.get(msg.job_id)
        if bar is None:
            bar = cancelable_progress(total=msg.total or 0, desc=description,
                                      cancel_callback=lambda j=msg.job_id: self.cancel(j))
            self._bars[msg.job_id] = bar
        if msg.total and bar.total != msg.total:
            bar.total = msg.total
        if msg.total:
            bar.n = min(msg.done, msg.total)
        if msg.text:
            bar.set_description(f"{description}: {msg.text}")
        bar.refresh()

    def _close_bar(self, job_id) -> None:
        bar = self._bars.pop(job_id, None)
        if bar is not None:
            bar.close()


def _show_death(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def owner_deleted(callback) -> bool:
    """Whether ``callback`` is a method of a Qt object whose C++ side is gone (its dock was closed)."""
    owner = getattr(callback, "__self__", None)
    if not isinstance(owner, QObject):
        return False
    try:
        owner.objectName()
    except RuntimeError:  # "wrapped C/C++ object ... has been deleted" (every Qt binding says it so)
        return True
    return False


_BRIDGES: weakref.WeakKeyDictionary[object, WorkerBridge] = weakref.WeakKeyDictionary()


def bridge_for(viewer) -> WorkerBridge:
    """The viewer's worker bridge, made (and the worker started) on first use.

    The worker ends when the application quits (and, being a daemon process, with the GUI process in any case).
    """
    from qtpy.QtWidgets import QApplication

    bridge = _BRIDGES.get(viewer)
    if bridge is None:
        bridge = WorkerBridge()
        _BRIDGES[viewer] = bridge
        bridge.start()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(bridge.shutdown)
    return bridge


def notify_failure(failed: Failed) -> None:
    """Show a failed job to the user: warnings for input, errors for crashes; silent for stale jobs."""
    from napari.utils.notifications import show_error, show_info, show_warning

    if failed.kind == "stale":
        return
    if failed.kind == "cancelled":
        show_info("Cancelled.")
    elif failed.kind == "input":
        show_warning(failed.message)
    else:
        show_error(failed.message)
