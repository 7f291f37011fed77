"""A model-free job for checking the worker: it reports progress in steps and can fail on purpose.

Used by ``napari-vip selftest``, by the tests of the worker machinery and by the GUI-responsiveness
benchmark.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .engine import handles


@dataclass
class SelfTestRequest:
    """Sleep ``steps`` times ``step_seconds``, reporting progress after each step.

    ``fail``: ``None``, ``"input"`` (raise VipInputError), ``"error"`` (raise RuntimeError),
    ``"memory"`` (raise MemoryError) or ``"exit"`` (end the worker process abruptly).
    """

    steps: int = 3
    step_seconds: float = 0.01
    fail: str | None = None
    tag: str = ""


@dataclass
class SelfTestResult:
    tag: str
    steps: int
    pid: int


@handles(SelfTestRequest)
def selftest(engine, req: SelfTestRequest, progress) -> SelfTestResult:
    from ..core.errors import VipInputError

    for i in range(req.steps):
        progress(i, req.steps, f"step {i + 1}/{req.steps}")
        time.sleep(req.step_seconds)
    if req.fail == "input":
        raise VipInputError("self-test: bad input, as asked")
    if req.fail == "error":
        raise RuntimeError("self-test: failure, as asked")
    if req.fail == "memory":
        raise MemoryError("self-test: out of memory, as asked")
    if req.fail == "exit":
        os._exit(3)
    progress(req.steps, req.steps, "done")
    return SelfTestResult(req.tag, req.steps, os.getpid())
