"""Fair sharing of one Engine between clients: round robin per client, switching at progress steps.

Each job runs in its own thread, but only the holder of the *turn* computes.  A job that reports progress after
holding the turn for ``quantum_s`` while another client waits gives the turn to the next client in round-robin
order and waits for its own next turn, so one client's long job (a 200-slice propagation) cannot starve another's
short one.  Within a client jobs run in order; newest-wins and cancel behave as in the local worker process
(:mod:`napari_vip.worker.process`): a job whose channel has a newer job from the same client ends as ``stale``,
a cancelled one as ``cancelled``, at the next progress step or before it starts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..worker.process import failure_of
from ..worker.protocol import Cancelled, Done, Failed, Progress

#: ``emit(message)`` receives the job's Progress, then one Done or Failed; called from the job's thread.
Emit = Callable[[object], None]


@dataclass(eq=False)
class _Task:
    client: object
    job_id: int
    channel: str | None
    request: object
    emit: Emit
    cancelled: bool = False
    thread: threading.Thread | None = None
    held_since: float = 0.0
    order: int = field(default_factory=itertools.count().__next__)


class Scheduler:
    """Runs ``run(request, progress)`` for many clients, one job computing at a time.

    Parameters
    ----------
    run : callable
        ``run(request, ProgressReporter) -> result``, e.g. ``Engine().run``.
    quantum_s : float
        How long a job keeps the turn while another client waits (checked at its progress steps).
    max_waiting : int
        Jobs one client may have waiting; more are refused (kind ``input``).
    """

    def __init__(self, run: Callable, quantum_s: float = 0.05, max_waiting: int = 64):
        self._run = run
        self.quantum_s = quantum_s
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._queues: dict[object, deque[_Task]] = {}
        self._rotation: deque = deque()
        self._holder: _Task | None = None
        self.started = 0
        self.finished = 0

    # -- what clients call -----------------------------------------------------------------------------------
    def submit(self, client, job_id: int, request, emit: Emit, channel: str | None = None) -> None:
        """Queue a job of ``client``; its messages go to ``emit``."""
        with self._cond:
            q = self._queues.setdefault(client, deque())
            if len(q) >= self.max_waiting:
                refused = Failed(job_id, "input", f"{len(q)} requests of this viewer are already waiting on the "
                                 "server; wait for them or cancel some.")
            else:
                refused = None
                q.append(_Task(client, job_id, channel, request, emit))
                if client not in self._rotation:
                    self._rotation.append(client)
                self._grant()
        if refused is not None:
            emit(refused)

    def cancel(self, client, job_id: int) -> None:
        """Stop ``client``'s job ``job_id`` at its next progress step (or before it starts)."""
        with self._cond:
            for task in self._queues.get(client, ()):
                if task.job_id == job_id:
                    task.cancelled = True
            self._grant()

    def drop_client(self, client) -> None:
        """Cancel every job of a client that went away."""
        with self._cond:
            for task in self._queues.get(client, ()):
                task.cancelled = True
            self._grant()

    def status(self) -> dict:
        """Queue length (jobs waiting or paused), the running job's client and request type, counters."""
        with self._cond:
            waiting = sum(len(q) for q in self._queues.values()) - (self._holder is not None)
            return {"queue_length": max(waiting, 0), "clients_with_jobs": sum(1 for q in self._queues.values() if q),
                    "running": type(self._holder.request).__name__ if self._holder else None,
                    "jobs_started": self.started, "jobs_finished": self.finished}

    # -- internals (under the lock) --------------------------------------------------------------------------
    def _ended_before_start(self, task: _Task) -> Failed | None:
        if task.cancelled:
            return Failed(task.job_id, "cancelled", "Cancelled before it started.")
        if self._overtaken(task):
            return Failed(task.job_id, "stale", "A newer request replaced this one.")
        return None

    def _overtaken(self, task: _Task) -> bool:
        return task.channel is not None and any(
            t.channel == task.channel and t.order > task.order for t in self._queues.get(task.client, ()))

    def _grant(self) -> None:
        """Give the turn to the next client in rotation with a job (if nobody holds it)."""
        while self._holder is None and self._rotation:
            client = self._rotation[0]
            self._rotation.rotate(-1)
            q = self._queues.get(client)
            if not q:
                self._rotation.remove(client)
                self._queues.pop(client, None)
                continue
            task = q[0]
            if task.thread is None:
                ended = self._ended_before_start(task)
                if ended is not None:
                    q.popleft()
                    threading.Thread(target=task.emit, args=(ended,), daemon=True).start()
                    continue
                task.thread = threading.Thread(target=self._work, args=(task,), daemon=True,
                                               name=f"napari-vip-job-{task.job_id}")
                self._holder = task
                task.held_since = time.monotonic()
                self.started += 1
                task.thread.start()
            else:
                self._holder = task
                task.held_since = time.monotonic()
                self._cond.notify_all()
            return

    def _others_waiting(self, task: _Task) -> bool:
        return any(q for c, q in self._queues.items() if c is not task.client and q)

    def _release(self, task: _Task, finished: bool) -> None:
        if finished:
            q = self._queues.get(task.client)
            if q and task in q:
                q.remove(task)
            if task.client not in self._rotation and q:
                self._rotation.append(task.client)
        self._holder = None
        self._grant()

    # -- the job's thread ------------------------------------------------------------------------------------
    def _should_stop(self, task: _Task) -> bool:
        with self._cond:
            if task.cancelled or self._overtaken(task):
                return True
            if self._others_waiting(task) and time.monotonic() - task.held_since >= self.quantum_s:
                self._release(task, finished=False)
                self._cond.wait_for(lambda: self._holder is task)
            return task.cancelled or self._overtaken(task)

    def _work(self, task: _Task) -> None:
        from ..worker.engine import ProgressReporter

        def emit_progress(done, total, text):
            task.emit(Progress(task.job_id, int(done), int(total), str(text)))

        try:
            result = self._run(task.request, ProgressReporter(emit_progress, lambda: self._should_stop(task)))
            msg = Done(task.job_id, result)
        except Cancelled:
            msg = (Failed(task.job_id, "cancelled", "Cancelled.") if task.cancelled
                   else Failed(task.job_id, "stale", "A newer request replaced this one."))
        except BaseException as exc:  # noqa: BLE001 -- every failure is reported; the server keeps serving
            msg = failure_of(task.job_id, exc)
        with self._cond:
            self.finished += 1
            self._release(task, finished=True)
        task.emit(msg)
