"""The ASGI application of ``napari-vip serve`` (FastAPI): jobs over a WebSocket, arrays uploaded once by digest.

Endpoints (all but ``/health`` and ``/openapi.json`` need ``Authorization: Bearer TOKEN`` when the server has a
token; missing: 401, wrong: 403):

- ``GET /health``: ``{"ok": true}`` for load balancers.
- ``GET /status``: queue length, clients, loaded models, array store, device and GPU memory.
- ``HEAD /arrays/{digest}``: 200 if the server holds that array, else 404.
- ``PUT /arrays/{digest}``: an ``.npy`` body (no pickle) whose :func:`~napari_vip.serve.wire.array_digest` is
  ``digest``; 400 malformed, 413 too large.
- ``WS /ws``: msgpack frames.  Client: ``{"op": "submit", "job", "channel", "request"}`` and
  ``{"op": "cancel", "job"}``.  Server: ``{"op": "hello", "device", "version"}`` once, then ``progress``
  (``job, done, total, text``), ``done`` (``job, result``), ``failed`` (``job, kind, message, details``) and
  ``missing`` (``job, digests``: upload these arrays and submit again).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import itertools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Response, WebSocket, WebSocketDisconnect

from .. import __version__
from ..worker.protocol import Done, Failed, Progress
from .policy import Refused, ServerPolicy
from .scheduler import Scheduler
from .token import check_server_token
from .wire import (
    DTYPES,
    WireError,
    array_digest,
    array_nbytes,
    check_digest,
    check_shape,
    decode,
    encode,
    pack,
    unpack,
)

log = logging.getLogger("napari_vip.serve")


@dataclass
class ServerConfig:
    """Settings of a server.

    Attributes
    ----------
    token : str or None
        Clients must send it (``Authorization: Bearer TOKEN``); ``None``: no authentication (loopback only).
    max_message_bytes : int
        Largest WebSocket frame (requests with small arrays inline).
    max_array_bytes : int
        Largest uploaded array.
    store_bytes : int
        Memory for uploaded arrays (least recently used are dropped first).
    """

    token: str | None = None
    policy: ServerPolicy = field(default_factory=ServerPolicy)
    max_message_bytes: int = 16 * 2 ** 20
    max_array_bytes: int = 512 * 2 ** 20
    store_bytes: int = 2 * 2 ** 30
    quantum_s: float = 0.05

    def __post_init__(self):
        check_server_token(self.token)


class ArrayStore:
    """Uploaded arrays by digest, shared by all clients; least recently used dropped beyond ``capacity`` bytes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, digest) -> bool:
        with self._lock:
            return digest in self._arrays

    def put(self, digest: str, arr: np.ndarray) -> None:
        arr.setflags(write=False)
        with self._lock:
            self._arrays[digest] = arr
            self._arrays.move_to_end(digest)
            while sum(a.nbytes for a in self._arrays.values()) > self.capacity and len(self._arrays) > 1:
                self._arrays.popitem(last=False)

    def get(self, digest: str) -> np.ndarray | None:
        with self._lock:
            arr = self._arrays.get(digest)
            if arr is not None:
                self._arrays.move_to_end(digest)
            return arr

    def summary(self) -> dict:
        with self._lock:
            return {"arrays": len(self._arrays), "bytes": int(sum(a.nbytes for a in self._arrays.values()))}


class _Missing(Exception):
    def __init__(self, digests):
        self.digests = digests


def read_npy(data: bytes, max_bytes: int) -> np.ndarray:
    """The array of ``.npy`` bytes: header checked (dtype in :data:`~napari_vip.serve.wire.DTYPES`, size matching
    the bytes, at most ``max_bytes``) before anything is allocated; never unpickles."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except Exception as exc:
        raise Refused(f"not an .npy array: {exc}") from exc
    if dtype.str not in DTYPES:
        raise Refused(f"array dtype {dtype.str} is not allowed (allowed: {', '.join(DTYPES)})")
    try:
        shape = check_shape(shape)
    except WireError as exc:
        raise Refused(str(exc)) from None
    if 0 in shape:
        raise Refused(f"array of shape {list(shape)} is empty: upload an image with pixels")
    nbytes = array_nbytes(dtype, shape)
    if nbytes > max_bytes:
        raise Refused(f"array of {nbytes} bytes is larger than the {max_bytes} allowed", 413)
    body = data[f.tell():]
    if len(body) != nbytes:
        raise Refused(f"array of shape {list(shape)} {dtype} needs {nbytes} bytes, got {len(body)}")
    arr = np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (ascontiguousarray makes 0-d 1-d)


class QueryStringFilter(logging.Filter):
    """Drops the query string of every request path a log record names (uvicorn's access and WebSocket
    lines): a token sent as ``?token=...`` is never written to a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(a.split("?", 1)[0] + "?…" if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True


def redact_query_strings() -> None:
    """Install :class:`QueryStringFilter` on uvicorn's loggers (once)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryStringFilter) for f in logger.filters):
            logger.addFilter(QueryStringFilter())


def create_app(config: ServerConfig | None = None, engine=None):
    """The FastAPI application; ``engine`` (default a new :class:`~napari_vip.worker.engine.Engine`) is shared by
    all clients through one :class:`~napari_vip.serve.scheduler.Scheduler`."""
    from ..models.device import resolve_device
    from ..worker.engine import Engine

    cfg = config or ServerConfig()
    redact_query_strings()
    engine = engine or Engine()
    scheduler = Scheduler(engine.run, cfg.quantum_s)
    store = ArrayStore(cfg.store_bytes)
    device = resolve_device(cfg.policy.device)
    sessions = itertools.count(1)
    connected: set[int] = set()

    app = FastAPI(title="napari-vip model server", version=__version__, docs_url=None, redoc_url=None,
                  description=__doc__)
    app.state.scheduler, app.state.store, app.state.engine, app.state.device = scheduler, store, engine, device

    def token_problem(header: str | None) -> int | None:
        if cfg.token is None:
            return None
        if not header or not header.startswith("Bearer "):
            return 401
        given = header[len("Bearer "):].encode()
        return None if hmac.compare_digest(given, cfg.token.encode()) else 403

    def authorised(request: Request) -> None:
        status = token_problem(request.headers.get("authorization"))
        if status is not None:
            raise HTTPException(status, "a token is required (Authorization: Bearer TOKEN)" if status == 401
                                else "wrong token")

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/status", dependencies=[Depends(authorised)])
    def status() -> dict:
        return {"version": __version__, "device": device, "precision": cfg.policy.precision,
                "clients": len(connected), **scheduler.status(),
                "loaded_models": [[str(part) for part in key] for key in engine.loaded_models()],
                "array_store": store.summary(), "gpu_memory": gpu_memory()}

    @app.head("/arrays/{digest}", dependencies=[Depends(authorised)])
    def has_array(digest: str) -> Response:
        return Response(status_code=200 if digest in store else 404)

    @app.put("/arrays/{digest}", dependencies=[Depends(authorised)], status_code=201)
    async def put_array(digest: str, request: Request) -> dict:
        try:
            check_digest(digest)
        except WireError as exc:
            raise HTTPException(400, f"{exc}: name an array by the sha256 of its dtype, shape and bytes") from None
        limit = cfg.max_array_bytes + 4096  # the .npy header
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"array upload of {declared} bytes is larger than the {limit} allowed")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, f"array upload is larger than the {limit} bytes allowed")
        try:
            arr = await asyncio.to_thread(read_npy, bytes(body), cfg.max_array_bytes)
        except Refused as exc:
            raise HTTPException(exc.status, str(exc)) from None
        if await asyncio.to_thread(array_digest, arr) != digest:
            raise HTTPException(400, "the array's digest does not match the address it was sent to")
        store.put(digest, arr)
        return {"digest": digest, "shape": list(arr.shape), "dtype": arr.dtype.str}

    def resolve(digest, dtype, shape):
        arr = store.get(digest)
        if arr is None:
            raise _Missing([digest])
        if arr.dtype.str != dtype or tuple(arr.shape) != tuple(shape):
            raise WireError(f"array {digest[:12]}… is {arr.dtype.str} {list(arr.shape)}, not {dtype} {list(shape)}")
        return arr.copy()

    def decode_request(data):
        missing = [v[0] for v in _refs(data) if isinstance(v[0], str) and v[0] not in store]
        if missing:
            raise _Missing(missing)
        return cfg.policy.admit(decode(data, resolve))

    @app.websocket("/ws")
    async def jobs(websocket: WebSocket) -> None:
        if token_problem(websocket.headers.get("authorization")) is not None:
            await websocket.close(code=1008)  # before accept: the handshake is refused with HTTP 403
            return
        await websocket.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        session = next(sessions)
        connected.add(session)

        def emit(msg) -> None:  # from job threads
            if isinstance(msg, Failed):
                msg = failure_for_client(msg)
            try:
                frame = pack(message_to_wire(msg))
            except Exception as exc:  # noqa: BLE001 -- an unregistered result type: report it rather than lose the job
                frame = pack(message_to_wire(Failed(msg.job_id, "error", f"cannot send the result: {exc}")))
            loop.call_soon_threadsafe(outbox.put_nowait, frame)

        async def send_all() -> None:
            while True:
                await websocket.send_bytes(await outbox.get())

        sender = asyncio.create_task(send_all())
        await websocket.send_bytes(pack({"op": "hello", "device": device, "version": __version__}))
        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                if frame.get("bytes") is None:
                    await close_unanswerable(websocket, 1003, "text frame: send binary msgpack frames")
                    break
                unanswerable = await handle(frame["bytes"], session, emit, outbox)
                if unanswerable:
                    await close_unanswerable(websocket, 1007, unanswerable)
                    break
        except WebSocketDisconnect:
            pass
        finally:
            connected.discard(session)
            scheduler.drop_client(session)
            sender.cancel()

    def failure_for_client(msg: Failed) -> Failed:
        """What a client is told of a failed job: model files named relative to the models folder, and the
        traceback (which names server paths) kept in the server's log."""
        if msg.details:
            log.error("job %s failed: %s\n%s", msg.job_id, msg.message, msg.details)
        details = "the traceback is in the server's log" if msg.details else ""
        return Failed(msg.job_id, msg.kind, cfg.policy.relative_paths(msg.message), details)

    async def close_unanswerable(websocket: WebSocket, code: int, reason: str) -> None:
        """Close the connection with ``reason`` (a frame without a job id cannot be answered with ``failed``)."""
        log.warning("closed a connection: %s", reason)
        try:
            await websocket.close(code=code, reason=reason[:120])
        except Exception:  # noqa: BLE001 -- the peer is already gone
            pass

    async def handle(raw: bytes, session: int, emit, outbox) -> str | None:
        """Serve one frame; returns why the connection must close when the frame has no job id to answer."""
        job = None
        try:
            msg = unpack(raw, cfg.max_message_bytes)
            if not isinstance(msg, dict) or type(msg.get("job")) is not int:
                raise WireError("a frame is a map with 'op' and an integer 'job'")
            job = msg["job"]
            if msg.get("op") == "cancel":
                scheduler.cancel(session, job)
                return
            if msg.get("op") != "submit":
                raise WireError(f"unknown op {msg.get('op')!r}")
            channel = msg.get("channel")
            if channel is not None and not isinstance(channel, str):
                raise WireError("channel must be a string or null")
            request = await asyncio.to_thread(decode_request, msg.get("request"))
        except _Missing as exc:
            await outbox.put(pack({"op": "missing", "job": job, "digests": exc.digests}))
            return
        except (WireError, Refused) as exc:
            if job is None:
                return f"malformed frame: {exc}"
            await outbox.put(pack(message_to_wire(Failed(job, "input", f"Refused by the server: {exc}"))))
            return None
        except Exception as exc:  # noqa: BLE001 -- a request that breaks a check in an unforeseen way: answer it
            log.exception("job %s: a request could not be read", job)
            if job is None:
                return "the frame could not be read"
            await outbox.put(pack(message_to_wire(Failed(
                job, "input", f"Refused by the server: the request could not be read ({type(exc).__name__})."))))
            return None
        scheduler.submit(session, job, request, emit, channel)
        return None

    return app


def _refs(data, depth: int = 0):
    """Every ``[digest, dtype, shape]`` of ``$ref`` entries in encoded values."""
    if depth > 40:
        return
    if isinstance(data, list):
        for v in data:
            yield from _refs(v, depth + 1)
    elif isinstance(data, dict):
        if "$ref" in data and isinstance(data["$ref"], list) and data["$ref"]:
            yield data["$ref"]
        else:
            for v in data.values():
                yield from _refs(v, depth + 1)


def message_to_wire(msg) -> dict:
    """A worker message (:class:`Progress`, :class:`Done`, :class:`Failed`) as a frame's values."""
    if isinstance(msg, Progress):
        return {"op": "progress", "job": msg.job_id, "done": msg.done, "total": msg.total, "text": msg.text}
    if isinstance(msg, Done):
        return {"op": "done", "job": msg.job_id, "result": encode(msg.result)}
    return {"op": "failed", "job": msg.job_id, "kind": msg.kind, "message": msg.message, "details": msg.details}


def gpu_memory() -> dict | None:
    """Allocated, reserved and total bytes per CUDA device, if torch is loaded and CUDA is available."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    out = {}
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out[f"cuda:{i}"] = {"allocated": int(torch.cuda.memory_allocated(i)),
                            "reserved": int(torch.cuda.memory_reserved(i)), "free": int(free), "total": int(total)}
    return out
