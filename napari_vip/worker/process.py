"""The worker process: a loop that serves jobs from an inbox and reports to an outbox.

Newest wins: before and while a job runs, the inbox is drained; a job whose channel has a newer job
waiting is dropped as ``stale``, and a :class:`Cancel` stops its job at the next progress step.
"""

from __future__ import annotations

import queue
import traceback

from ..core.errors import VipInputError
from .protocol import Cancel, Cancelled, Done, Failed, Job, Progress


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text


def _is_cuda_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "cuda error" in text or "cudnn_status" in text or "device-side assert" in text


class _Inbox:
    """Inbox with a look-ahead buffer, so running jobs can see what is waiting."""

    def __init__(self, q):
        self.q = q
        self.waiting: list[Job] = []
        self.cancelled: set[int] = set()
        self.closed = False

    def drain(self) -> None:
        while True:
            try:
                msg = self.q.get_nowait()
            except queue.Empty:
                return
            self._take(msg)

    def _take(self, msg) -> None:
        if msg is None:
            self.closed = True
        elif isinstance(msg, Cancel):
            self.cancelled.add(msg.job_id)
        else:
            self.waiting.append(msg)

    def next_job(self) -> Job | None:
        while not self.waiting and not self.closed:
            self._take(self.q.get())
        self.drain()
        return self.waiting.pop(0) if self.waiting else None

    def overtaken(self, job: Job) -> bool:
        """A newer job waits on ``job``'s channel, or ``job`` is a background request and any job waits."""
        if getattr(job.request, "background", False) and self.waiting:
            return True
        return job.channel is not None and any(j.channel == job.channel for j in self.waiting)


def serve(inbox_q, outbox_q) -> None:
    """Worker main loop (runs in the child process).  ``None`` in the inbox ends it."""
    from .engine import Engine, ProgressReporter

    engine = Engine()
    inbox = _Inbox(inbox_q)
    while True:
        job = inbox.next_job()
        if job is None:
            return
        if job.id in inbox.cancelled:
            outbox_q.put(Failed(job.id, "cancelled", "Cancelled before it started."))
            continue
        if inbox.overtaken(job):
            outbox_q.put(Failed(job.id, "stale", "A newer request replaced this one."))
            continue

        def should_stop(job=job) -> bool:
            inbox.drain()
            return job.id in inbox.cancelled or inbox.overtaken(job)

        def emit(done, total, text, data=None, job=job):
            outbox_q.put(Progress(job.id, int(done), int(total), str(text), data))

        try:
            result = engine.run(job.request, ProgressReporter(emit, should_stop))
        except Cancelled:
            kind = "cancelled" if job.id in inbox.cancelled else "stale"
            outbox_q.put(Failed(job.id, kind, "Cancelled." if kind == "cancelled" else "A newer request replaced this one."))
        except BaseException as exc:  # report everything; the GUI must never hang waiting
            outbox_q.put(failure_of(job.id, exc))
            if not isinstance(exc, Exception) or _is_cuda_failure(exc):
                return  # the CUDA context is unusable: end, the client starts a fresh worker
        else:
            outbox_q.put(Done(job.id, result))


def failure_of(job_id: int, exc: BaseException) -> Failed:
    """How a job that raised ``exc`` failed: ``input`` (VipInputError), ``memory`` (memory freed), or ``error``
    with the traceback."""
    if isinstance(exc, VipInputError):
        return Failed(job_id, "input", str(exc))
    if _is_out_of_memory(exc):
        _free_memory()
        return Failed(job_id, "memory", f"Out of memory: {exc}. Try a smaller image, fewer markers, or the cpu "
                                        "device.", traceback.format_exc())
    return Failed(job_id, "error", f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover
        pass
