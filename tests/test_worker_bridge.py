"""The viewer's worker bridge: a dock closed while its job runs is not called back when the job ends."""

from __future__ import annotations

from napari_vip.worker.selftest import SelfTestRequest


def test_a_closed_docks_callbacks_are_not_called(qtbot):
    from qtpy.QtWidgets import QLabel, QWidget

    from napari_vip.widgets.worker_bridge import WorkerBridge, owner_deleted

    class Dock(QWidget):
        def __init__(self):
            super().__init__()
            self.status = QLabel(self)

        def on_done(self, result):
            self.status.setText(f"done {result.tag}")

    window, open_dock, closed_dock = QWidget(), Dock(), Dock()
    open_dock.setParent(window)
    closed_dock.setParent(window)
    bridge = WorkerBridge()
    try:
        finished = []
        for dock in (open_dock, closed_dock):
            bridge.submit(SelfTestRequest(steps=2, step_seconds=0.2, tag="t"), "test", dock.on_done,
                          lambda failed: finished.append(failed))
        callback = closed_dock.on_done
        closed_dock.deleteLater()
        qtbot.waitUntil(lambda: owner_deleted(callback), timeout=5000)
        assert not owner_deleted(open_dock.on_done) and not owner_deleted(lambda r: None)
        qtbot.waitUntil(lambda: open_dock.status.text() == "done t", timeout=60_000)
        qtbot.waitUntil(lambda: not bridge.client.busy, timeout=60_000)
        assert finished == []
    finally:
        bridge.shutdown()
        window.deleteLater()
