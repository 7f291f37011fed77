"""A client of ``napari-vip serve`` with the public API of :class:`~napari_vip.worker.client.WorkerClient`.

``submit`` (with a channel: newest wins), ``cancel``, ``poll`` (callbacks run in the caller's thread), ``wait``,
``busy``, ``alive``, ``start``, ``shutdown`` and ``on_worker_died``.  Network I/O runs in a background thread:
arrays of 64 KiB or more are uploaded once per digest (``PUT /arrays/{digest}``) and referenced afterwards; jobs,
progress, cancel and results travel over one WebSocket.  If the server goes away, pending jobs fail with kind
``crash`` and the next request reconnects.  Results carry ``provenance.extra["server"]`` (URL and device).
The token is sent in a header and never logged.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from ..worker.client import JobClient
from ..worker.protocol import Cancel, Failed, Job, Progress
from .wire import WireError, decode, encode, pack, provenances, unpack

Callback = Callable[[object], None]
#: Largest frame the client accepts from the server.
MAX_FRAME_BYTES = 1 << 30


class _Lost:
    """The connection ended (or could not be made); ``kind`` is ``crash`` or ``input`` (e.g. a wrong token)."""

    def __init__(self, message: str, kind: str = "crash"):
        self.message, self.kind = message, kind


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


class RemoteClient(JobClient):
    """Runs requests on a model server.

    Parameters
    ----------
    url : str
        ``http://host:port`` or ``https://host:port`` (TLS; the system's or ``SSL_CERT_FILE``'s certificates).
    token : str, optional
        Sent as ``Authorization: Bearer TOKEN``.
    on_worker_died : callable, optional
        ``on_worker_died(message)`` when the connection ends with jobs pending.
    ids : iterator of int, optional
        Job ids (to keep them apart from another client's in one GUI).
    """

    def __init__(self, url: str, token: str | None = None, on_worker_died: Callable[[str], None] | None = None,
                 ids: Iterator[int] | None = None, timeout_s: float = 10.0):
        super().__init__(ids)
        self.url = url.rstrip("/")
        self._token = token
        self.on_worker_died = on_worker_died
        self.timeout_s = timeout_s
        self._inbox: queue.Queue = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._outbox: asyncio.Queue | None = None
        self._task = None
        self.server: dict = {}
        self.restarts = 0
        self._connections = 0
        self.pid = None

    def __repr__(self) -> str:  # the token stays out of logs
        return f"RemoteClient({self.url!r})"

    # -- connection --------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._outbox is not None

    def start(self) -> None:
        """Start the I/O thread and connect (the connection also starts on the first request)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="napari-vip-remote")
            self._thread.start()
        if self._outbox is None:
            ready = threading.Event()
            self._task = asyncio.run_coroutine_threadsafe(self._connection(ready), self._loop)
            ready.wait(self.timeout_s)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close the connection and stop the I/O thread."""
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        if self._outbox is not None:
            loop.call_soon_threadsafe(self._outbox.put_nowait, None)
        if self._task is not None:
            try:
                self._task.result(timeout)
            except Exception:  # noqa: BLE001  (the connection reports its own failures to the inbox)
                self._task.cancel()
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            loop.close()
        self._outbox = self._task = None

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def _connection(self, ready: threading.Event) -> None:
        import httpx
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        outbox: asyncio.Queue = asyncio.Queue()
        self._outbox = outbox
        if self._connections:
            self.restarts += 1
        self._connections += 1
        ws_url = "ws" + self.url[len("http"):] + "/ws"
        reader = None
        try:
            async with httpx.AsyncClient(base_url=self.url, headers=self._headers(), timeout=self.timeout_s) as http, \
                    connect(ws_url, additional_headers=self._headers(), max_size=MAX_FRAME_BYTES,
                            open_timeout=self.timeout_s, proxy=None) as ws:
                hello = unpack(await ws.recv(), MAX_FRAME_BYTES)
                self.server = {"url": self.url, "device": hello.get("device"), "version": hello.get("version")}
                ready.set()
                reader = asyncio.create_task(self._read(ws, outbox))
                sent: dict[int, tuple] = {}
                known: set[str] = set()
                while True:
                    item = await outbox.get()
                    if item is None or reader.done():
                        break
                    if isinstance(item, Cancel):
                        sent.pop(item.job_id, None)
                        await ws.send(pack({"op": "cancel", "job": item.job_id}))
                        continue
                    if isinstance(item, list):  # ("missing", job, digests): upload again and resend
                        _, job_id, digests = item
                        known.difference_update(digests)
                        item = sent.get(job_id)
                        if item is None:
                            continue
                    job, refs, data = item if isinstance(item, tuple) else self._encode(item)
                    sent[job.id] = (job, refs, data)
                    try:
                        await self._upload(http, refs, known)
                    except _UploadRefused as exc:
                        self._inbox.put(Failed(job.id, "input", str(exc)))
                        continue
                    await ws.send(data)
                if reader.done() and isinstance(reader.result(), _Lost):
                    self._inbox.put(reader.result())
        except InvalidStatus as exc:
            code = exc.response.status_code
            why = ("the server needs a token" if code == 401 else "the server refused the token" if code in (401, 403)
                   else f"HTTP {code}")
            self._inbox.put(_Lost(f"Cannot use the server at {self.url}: {why}. Check the token.", "input"))
        except (TimeoutError, OSError, ConnectionClosed, httpx.HTTPError, WireError) as exc:
            self._inbox.put(_Lost(f"The model server at {self.url} is unreachable or went away "
                                  f"({type(exc).__name__}). Your layers are untouched; the next request reconnects."))
        finally:
            if reader is not None:
                reader.cancel()
            if self._outbox is outbox:
                self._outbox = None
            ready.set()
            while not outbox.empty():  # jobs that were never sent
                item = outbox.get_nowait()
                if isinstance(item, Job):
                    self._inbox.put(_Lost(f"The model server at {self.url} is unreachable."))

    def _encode(self, job: Job):
        refs: dict[str, np.ndarray] = {}
        data = pack({"op": "submit", "job": job.id, "channel": job.channel, "request": encode(job.request, refs)})
        return job, refs, data

    async def _upload(self, http, refs: dict, known: set) -> None:
        for digest, arr in refs.items():
            if digest in known:
                continue
            head = await http.head(f"/arrays/{digest}")
            if head.status_code == 404:
                resp = await http.put(f"/arrays/{digest}", content=await asyncio.to_thread(npy_bytes, arr))
                if resp.status_code >= 400:
                    raise _UploadRefused(f"The server refused an array ({resp.status_code}): "
                                         f"{resp.json().get('detail', resp.text)}")
            elif head.status_code >= 400:
                raise _UploadRefused(f"The server refused an array ({head.status_code}); check the token.")
            known.add(digest)

    async def _read(self, ws, outbox: asyncio.Queue):
        """Frames to the inbox until the connection ends; then wakes the sender (``None``) and returns a
        :class:`_Lost`."""
        try:
            return await self._read_frames(ws, outbox)
        finally:
            outbox.put_nowait(None)

    async def _read_frames(self, ws, outbox: asyncio.Queue):
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in ws:
                msg = unpack(frame, MAX_FRAME_BYTES)
                op = msg.get("op")
                if op == "missing":
                    outbox.put_nowait(["missing", msg["job"], list(msg["digests"])])
                else:
                    self._inbox.put(msg)
        except (ConnectionClosed, WireError, OSError) as exc:
            return _Lost(f"The model server at {self.url} went away ({type(exc).__name__}). Your layers are "
                         "untouched; the next request reconnects.")
        return _Lost(f"The model server at {self.url} closed the connection. Your layers are untouched; the next "
                     "request reconnects.")

    def _send(self, item) -> None:
        if self._outbox is None or self._loop is None:
            self.start()
        outbox, loop = self._outbox, self._loop
        if outbox is None:
            self._inbox.put(_Lost(f"The model server at {self.url} is unreachable."))
            return
        loop.call_soon_threadsafe(outbox.put_nowait, item)

    # -- jobs --------------------------------------------------------------------------------------------------
    def submit(self, request, channel: str | None = None, on_done: Callback | None = None,
               on_error: Callback | None = None, on_progress: Callback | None = None) -> int:
        """Send ``request``; returns its job id.  Same contract as :meth:`WorkerClient.submit`."""
        job, replaced = self._new_job(request, channel, on_done, on_error, on_progress)
        if replaced is not None:
            self._send(Cancel(replaced))
        self._send(job)
        return job.id

    def cancel(self, job_id: int) -> None:
        """Stop a job at its next progress step; its ``on_error`` gets kind ``cancelled``."""
        if job_id in self._pending and self.alive:
            self._send(Cancel(job_id))

    def poll(self, max_messages: int = 100) -> int:
        """Handle up to ``max_messages`` messages from the server; returns how many were handled."""
        n = 0
        while n < max_messages:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                break
            n += 1
            self._dispatch(msg)
        return n

    def _dispatch(self, msg) -> None:
        if isinstance(msg, _Lost):
            self._lost(msg)
            return
        if isinstance(msg, Failed):
            self._finish(msg.job_id, msg, failed=True)
            return
        job_id = msg.get("job")
        pend = self._pending.get(job_id)
        if pend is None:
            return
        op = msg.get("op")
        if op == "progress":
            if pend.on_progress:
                pend.on_progress(Progress(job_id, msg["done"], msg["total"], msg["text"]))
        elif op == "done":
            try:
                result = decode(msg["result"])
            except WireError as exc:
                self._finish(job_id, Failed(job_id, "error", f"Cannot read the server's result: {exc}"), True)
                return
            for prov in provenances(result):
                prov.extra["server"] = dict(self.server)
            self._finish(job_id, result, failed=False)
        elif op == "failed":
            self._finish(job_id, Failed(job_id, msg["kind"], msg["message"], msg.get("details", "")), True)

    def _finish(self, job_id, payload, failed: bool) -> None:
        pend = self._pending.pop(job_id, None)
        if pend is None:
            return
        cb = pend.on_error if failed else pend.on_done
        if cb:
            cb(payload)

    def _lost(self, lost: _Lost) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for pend in pending.values():
            if pend.on_error:
                pend.on_error(Failed(pend.job.id, lost.kind, lost.message))
        if self.on_worker_died and lost.kind == "crash":
            self.on_worker_died(lost.message)


class _UploadRefused(Exception):
    pass


class RemoteEngine:
    """``run(request, progress)`` on a server, like :meth:`Engine.run` (for the command-line tool).

    Raises :class:`~napari_vip.core.errors.VipInputError` for an ``input`` failure, ``KeyboardInterrupt`` cancels
    the job, and any other failure is a ``RuntimeError`` with the server's message.
    """

    def __init__(self, url: str, token: str | None = None):
        self.client = RemoteClient(url, token)

    def run(self, request, progress=None):
        from ..core.errors import VipInputError

        out: dict = {}
        report = (lambda msg: progress(msg.done, msg.total, msg.text)) if progress else None
        job = self.client.submit(request, on_done=lambda r: out.setdefault("result", r),
                                 on_error=lambda f: out.setdefault("failed", f), on_progress=report)
        try:
            self.client.wait(job, timeout=24 * 3600)
        except KeyboardInterrupt:
            self.client.cancel(job)
            raise
        finally:
            self.client.shutdown()
        if "failed" in out:
            failed = out["failed"]
            if failed.kind == "input":
                raise VipInputError(failed.message)
            raise RuntimeError(f"{failed.kind}: {failed.message}")
        return out["result"]
