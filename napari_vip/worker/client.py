"""The GUI side of the worker: start it, send jobs, read progress and results, restart it if it dies.

:class:`WorkerClient` is Qt-free.  Its :meth:`poll` reads whatever the worker sent and calls the
job's callbacks in the caller's thread; the widgets call it from a Qt timer on the GUI thread.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .protocol import Cancel, Done, Failed, Job, Progress

Callback = Callable[[Any], None]


@dataclass
class _Pending:
    job: Job
    on_done: Callback | None
    on_error: Callback | None
    on_progress: Callback | None


class JobClient:
    """What every client of the Engine keeps: the jobs sent and not finished (with their callbacks), the newest
    job per channel, and waiting for one.  :class:`WorkerClient` sends them to a local process, the model
    server's client (:class:`napari_vip.serve.remote_client.RemoteClient`) over the network.

    Subclasses provide ``poll()``.
    """

    def __init__(self, ids: Iterator[int] | None = None):
        self._ids = ids or itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._latest: dict[str, int] = {}

    def _new_job(self, request, channel, on_done, on_error, on_progress) -> tuple[Job, int | None]:
        """``(job, replaced)``: the new job, registered; ``replaced`` the id of the running job of its channel
        that it replaces (its callbacks will never run; the caller cancels it where it runs), or ``None``."""
        job = Job(next(self._ids), request, channel)
        replaced = None
        if channel is not None:
            old = self._latest.get(channel)
            if old is not None and old in self._pending:
                del self._pending[old]
                replaced = old
            self._latest[channel] = job.id
        self._pending[job.id] = _Pending(job, on_done, on_error, on_progress)
        return job, replaced

    def latest(self, channel: str) -> int | None:
        """The newest job id sent on ``channel`` (``None`` if none)."""
        return self._latest.get(channel)

    def pending(self) -> list[int]:
        """Ids of the jobs sent and not yet finished, oldest first."""
        return list(self._pending)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def wait(self, job_id: int, timeout: float = 60.0, interval: float = 0.01) -> None:
        """Poll until ``job_id`` has finished (for scripts and tests; the GUI polls from a timer)."""
        import time

        end = time.monotonic() + timeout
        while job_id in self._pending:
            if time.monotonic() > end:
                raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
            if self.poll() == 0:
                time.sleep(interval)


class WorkerClient(JobClient):
    """Runs requests in a background process.

    Parameters
    ----------
    start_method : str
        ``spawn`` (default) gives the worker a clean interpreter, safe beside Qt and CUDA.
    on_worker_died : callable, optional
        ``on_worker_died(message)`` when the process ends unexpectedly.
    """

    def __init__(self, start_method: str = "spawn", on_worker_died: Callable[[str], None] | None = None):
        super().__init__()
        self._ctx = mp.get_context(start_method)
        self._proc = None
        self._inbox = None
        self._outbox = None
        self.on_worker_died = on_worker_died
        self.restarts = 0
        self._started = False

    # -- process -----------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the worker process if it is not running."""
        if self.alive:
            return
        from .process import serve

        if self._started:
            self.restarts += 1
        self._started = True
        self._inbox = self._ctx.Queue()
        self._outbox = self._ctx.Queue()
        self._proc = self._ctx.Process(target=serve, args=(self._inbox, self._outbox), daemon=True,
                                       name="napari-vip-worker")
        self._proc.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to finish and wait; kill it if it does not."""
        if self._proc is None:
            return
        if self._proc.is_alive():
            try:
                self._inbox.put(None)
            except (ValueError, OSError):
                pass
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout)
        self._proc = None

    # -- jobs --------------------------------------------------------------------------------------------------
    def submit(self, request, channel: str | None = None, on_done: Callback | None = None,
               on_error: Callback | None = None, on_progress: Callback | None = None) -> int:
        """Queue ``request``; returns its job id.

        With a ``channel``, this job replaces any earlier job of that channel: the earlier one is
        cancelled in the worker and its callbacks are never called.  ``on_error`` receives a
        :class:`Failed`, ``on_progress`` a :class:`Progress`, ``on_done`` the result.
        """
        if not self.alive:
            self.start()
        job, replaced = self._new_job(request, channel, on_done, on_error, on_progress)
        if replaced is not None:
            self._inbox.put(Cancel(replaced))
        self._inbox.put(job)
        return job.id

    def cancel(self, job_id: int) -> None:
        """Stop a job at its next progress step; its ``on_error`` gets kind ``cancelled``."""
        if job_id in self._pending and self.alive:
            self._inbox.put(Cancel(job_id))


    def poll(self, max_messages: int = 100) -> int:
        """Handle up to ``max_messages`` messages from the worker; returns how many were handled.

        Also notices a dead worker: its pending jobs fail with kind ``crash``.
        """
        n = 0
        while self._outbox is not None and n < max_messages:
            try:
                msg = self._outbox.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                break
            n += 1
            self._dispatch(msg)
        if self._proc is not None and not self._proc.is_alive() and n == 0:
            self._worker_died()
        return n

    def _dispatch(self, msg) -> None:
        pend = self._pending.get(msg.job_id)
        if pend is None:
            return  # a stale or cancelled job: nobody is waiting for it
        if isinstance(msg, Progress):
            if pend.on_progress:
                pend.on_progress(msg)
            return
        del self._pending[msg.job_id]
        if isinstance(msg, Done):
            if pend.on_done:
                pend.on_done(msg.result)
        elif isinstance(msg, Failed):
            if pend.on_error:
                pend.on_error(msg)

    def _worker_died(self) -> None:
        code = self._proc.exitcode
        self._proc = None
        if not self._pending:
            return
        why = "killed (perhaps out of memory)" if code is not None and code < 0 else f"exit code {code}"
        message = (f"The model worker stopped unexpectedly ({why}). Your layers are untouched; "
                   "the next request starts a fresh worker.")
        pending, self._pending = self._pending, {}
        for pend in pending.values():
            if pend.on_error:
                pend.on_error(Failed(pend.job.id, "crash", message))
        if self.on_worker_died:
            self.on_worker_died(message)
