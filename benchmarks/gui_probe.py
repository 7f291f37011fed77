"""Measures the largest gap between ticks of a fast QTimer: how long the GUI event loop was blocked."""

from __future__ import annotations

import time


class EventLoopProbe:
    """Start it, run something that keeps the event loop going, read ``max_gap_ms``.

    A QTimer at ``interval_ms`` records the time between its ticks; a gap much longer than the
    interval means the GUI thread was busy and the viewer did not respond.
    """

    def __init__(self, interval_ms: int = 5):
        from qtpy.QtCore import QTimer

        self.interval_ms = interval_ms
        self.gaps: list[float] = []
        self._last = None
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def start(self) -> None:
        self._last = None
        self.gaps.clear()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def max_gap_ms(self) -> float:
        return max(self.gaps) if self.gaps else float("nan")


def run_until(app, predicate, timeout_s: float = 600.0) -> float:
    """Process Qt events until ``predicate()`` is true; returns the seconds it took."""
    t0 = time.perf_counter()
    while not predicate():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("benchmark step did not finish")
    return time.perf_counter() - t0
