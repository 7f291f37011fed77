"""The wire format of requests and results: msgpack with raw array bytes, and an explicit registry of types.

Nothing is ever unpickled and nothing outside :data:`WIRE_TYPES` is constructed.  A value encodes as:

- ``None``, ``bool``, ``int``, ``float``, ``str``: themselves; ``list``: a list;
- ``tuple``: ``{"$tuple": [...]}``; ``dict``: ``{"$dict": [[key, value], ...]}``;
- ``np.ndarray``: ``{"$nd": [dtype, shape, bytes]}`` (C order), or ``{"$ref": [digest, dtype, shape]}`` for an
  array uploaded before (see :func:`array_digest`); a numpy scalar: ``{"$np": [dtype, bytes]}``;
- a registered dataclass: ``{"$type": name, "fields": {field: value}}``.

Dtypes are limited to :data:`DTYPES`; an array's bytes must match its dtype and shape exactly, so decoding never
allocates more than the message holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any

import numpy as np

#: Name on the wire -> ``module:qualname``.  Only these classes are ever built from a message.
WIRE_TYPES = {
    # shared
    "Provenance": "napari_vip.worker.protocol:Provenance",
    "Marker": "napari_vip.core.markers:Marker",
    "ModelSpec": "napari_vip.models.spec:ModelSpec",
    "SamSpec": "napari_vip.models.sam:SamSpec",
    "Sam2Spec": "napari_vip.models.sam2_family:Sam2Spec",
    "VlsmSpec": "napari_vip.models.vlsm.spec:VlsmSpec",
    "Focus": "napari_vip.core.focus:Focus",
    "RegionPrompt": "napari_vip.core.text_region:RegionPrompt",
    "RegionConcepts": "napari_vip.core.region_concepts:RegionConcepts",
    "LlmConfig": "napari_vip.models.llm_descriptors:LlmConfig",
    # requests
    "SelfTestRequest": "napari_vip.worker.selftest:SelfTestRequest",
    "ClassifyRequest": "napari_vip.worker.classify:ClassifyRequest",
    "AttentionRequest": "napari_vip.worker.attention:AttentionRequest",
    "ConceptClassifyRequest": "napari_vip.worker.concepts:ConceptClassifyRequest",
    "RegionConceptsRequest": "napari_vip.worker.concepts:RegionConceptsRequest",
    "DescriptorsRequest": "napari_vip.worker.concepts:DescriptorsRequest",
    "SegmentEmbedRequest": "napari_vip.worker.segment:SegmentEmbedRequest",
    "SegmentRequest": "napari_vip.worker.segment:SegmentRequest",
    "TextSegmentRequest": "napari_vip.worker.segment:TextSegmentRequest",
    "LearnRequest": "napari_vip.worker.learn:LearnRequest",
    "VlsmSegmentRequest": "napari_vip.worker.vlsm:VlsmSegmentRequest",
    # results
    "SelfTestResult": "napari_vip.worker.selftest:SelfTestResult",
    "ClassifyResult": "napari_vip.worker.classify:ClassifyResult",
    "ConditionResult": "napari_vip.worker.classify:ConditionResult",
    "AttentionResult": "napari_vip.worker.attention:AttentionResult",
    "AttentionCondition": "napari_vip.worker.attention:AttentionCondition",
    "ConceptClassifyResult": "napari_vip.worker.concepts:ConceptClassifyResult",
    "ConceptCondition": "napari_vip.worker.concepts:ConceptCondition",
    "RegionConceptsResult": "napari_vip.worker.concepts:RegionConceptsResult",
    "DescriptorsResult": "napari_vip.worker.concepts:DescriptorsResult",
    "EmbedResult": "napari_vip.worker.segment:EmbedResult",
    "SegmentResult": "napari_vip.worker.segment:SegmentResult",
    "TextSegmentResult": "napari_vip.worker.segment:TextSegmentResult",
    "LearnResult": "napari_vip.worker.learn:LearnResult",
    "VlsmSegmentResult": "napari_vip.worker.vlsm:VlsmSegmentResult",
}

#: Request types the wire does not carry, and why: the server is for interactive requests of one image.
LOCAL_ONLY = {
    "FinetuneRequest": "fine-tuning is a training job over a data set's files: it runs in the local worker, the "
                       "command line or torchrun, never on the shared model server",
    "EvaluateRequest": "dataset evaluation is batch work: it shards over Dask workers (napari-vip evaluate "
                       "--scheduler), not a long request to the model server",
    "PropagateRequest": "volume propagation sends a whole volume; it runs in the local worker until the wire "
                        "streams volumes slice by slice",
    "VolumeEmbedRequest": "as PropagateRequest",
    "EvaluateSegRequest": "segmentation evaluation is batch work over a data set's files: it shards over Dask "
                          "workers (napari-vip evaluate-seg --scheduler)",
    "RegionSentencesRequest": "CoTexNet sentences of a data set read its files and may ask a multimodal model for "
                              "minutes: batch work run where the data is (napari-vip sentences)",
    "LearnedVolumeRequest": "as PropagateRequest: a whole volume, segmented slice by slice in the local worker",
}

#: Array dtypes allowed on the wire (numpy ``dtype.str``).
DTYPES = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<i8", "<u8", "<f4", "<f8")
#: Limits that bound what a message can make the decoder build.
MAX_DEPTH = 32
MAX_NDIM = 8
#: Arrays at least this large are sent by reference when the encoder is given ``refs``.
REF_MIN_BYTES = 64 * 1024


class WireError(ValueError):
    """A message that cannot be decoded: unknown type, bad array, too deep; the text says which."""


_classes: dict[str, type] = {}
_names: dict[type, str] = {}


def wire_class(name: str) -> type:
    """The registered class for ``name``; :class:`WireError` for a name not in :data:`WIRE_TYPES`."""
    cls = _classes.get(name) if isinstance(name, str) else None
    if cls is None:
        target = WIRE_TYPES.get(name) if isinstance(name, str) else None
        if target is None:
            raise WireError(f"type {_short(name)} is not allowed on the wire")
        module, _, qual = target.partition(":")
        cls = getattr(importlib.import_module(module), qual)
        _classes[name], _names[cls] = cls, name
    return cls


def wire_name(cls: type) -> str:
    """The wire name of a registered class; :class:`WireError` for any other."""
    if cls not in _names:
        for name in WIRE_TYPES:
            wire_class(name)
    if cls not in _names:
        raise WireError(f"{cls.__module__}.{cls.__qualname__} is not in the wire registry (serve/wire.py)")
    return _names[cls]


def array_digest(arr: np.ndarray) -> str:
    """sha256 hex of an array's dtype, shape and C-order bytes: the name of an uploaded array."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def check_dtype(dtype) -> np.dtype:
    """The numpy dtype of a wire dtype string; :class:`WireError` for any outside :data:`DTYPES`."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(f"array dtype {dtype!r} is not allowed (allowed: {', '.join(DTYPES)})")
    return np.dtype(dtype)


#: Largest number of elements an array may declare (its bytes are checked against it before anything is built).
MAX_ELEMENTS = 2 ** 40


def check_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple: at most :data:`MAX_NDIM` non-negative sizes whose product (exact, not wrapped
    around as int64 would) is at most :data:`MAX_ELEMENTS`; :class:`WireError` otherwise."""
    if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ELEMENTS for n in shape)):
        raise WireError(f"array shape {_short(shape)} is not a list of at most {MAX_NDIM} non-negative sizes")
    if math.prod(max(n, 1) for n in shape) > MAX_ELEMENTS:  # zeros aside: numpy refuses such shapes even empty
        raise WireError(f"array shape {list(shape)} declares more than {MAX_ELEMENTS} elements")
    return tuple(shape)


def array_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Bytes an array of ``dtype`` and ``shape`` holds, computed with Python integers (no overflow)."""
    return math.prod(shape) * dtype.itemsize


def array_from_bytes(dtype, shape, data) -> np.ndarray:
    """A writable array from its wire parts; the bytes must hold exactly ``prod(shape)`` items."""
    dt, shp = check_dtype(dtype), check_shape(shape)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("array data must be bytes")
    if array_nbytes(dt, shp) != len(data):
        raise WireError(f"array of shape {list(shp)} and dtype {dtype} needs {array_nbytes(dt, shp)} bytes, "
                        f"got {len(data)}")
    return np.frombuffer(data, dtype=dt).reshape(shp).copy()


def _short(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages never echo a whole hostile message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_digest(digest) -> str:
    """An uploaded array's name: 64 lower-case hex characters (sha256); :class:`WireError` otherwise."""
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WireError(f"array digest {_short(digest)} is not a sha256 hex string")
    return digest


def _wire_dtype(arr: np.ndarray) -> str:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    return check_dtype(dt.str).str


def encode(obj, refs: dict[str, np.ndarray] | None = None):
    """``obj`` as msgpack-ready values.  With ``refs``, arrays of :data:`REF_MIN_BYTES` or more become
    ``$ref`` entries and are added to ``refs`` (digest -> array) for upload."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.ndarray):
        dtype = _wire_dtype(obj)
        arr = np.ascontiguousarray(obj, dtype=np.dtype(dtype))
        if refs is not None and arr.nbytes >= REF_MIN_BYTES:
            digest = array_digest(arr)
            refs[digest] = arr
            return {"$ref": [digest, dtype, list(arr.shape)]}
        return {"$nd": [dtype, list(arr.shape), arr.tobytes()]}
    if isinstance(obj, np.generic):
        arr = np.asarray(obj)
        return {"$np": [_wire_dtype(arr), arr.astype(_wire_dtype(arr)).tobytes()]}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v, refs) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, refs) for v in obj]
    if isinstance(obj, dict):
        return {"$dict": [[encode(k, refs), encode(v, refs)] for k, v in obj.items()]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"$type": wire_name(type(obj)),
                "fields": {f.name: encode(getattr(obj, f.name), refs) for f in dataclasses.fields(obj) if f.init}}
    raise WireError(f"cannot send a {type(obj).__name__} over the wire")


def decode(data, resolve: Callable[[str, str, tuple], np.ndarray] | None = None, _depth: int = 0):
    """The value :func:`encode` made.  ``resolve(digest, dtype, shape)`` returns an uploaded array (it raises
    for an unknown digest); without it a ``$ref`` is a :class:`WireError`."""
    if _depth > MAX_DEPTH:
        raise WireError(f"message nested deeper than {MAX_DEPTH} levels")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, resolve, _depth + 1) for v in data]
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__} in a message")
    if "$type" in data:
        if len(data) != 2 or "fields" not in data:
            raise WireError("a typed value is a map of exactly '$type' and 'fields'")
        return _decode_dataclass(data, resolve, _depth)
    if len(data) != 1:
        raise WireError(f"a map in a message has one tag ($nd, $ref, $np, $tuple, $dict) or '$type' and "
                        f"'fields', not the keys {_short(sorted(map(str, data)))}")
    ((tag, body),) = data.items()
    if tag == "$nd" and isinstance(body, list) and len(body) == 3:
        return array_from_bytes(*body)
    if tag == "$ref" and isinstance(body, list) and len(body) == 3:
        if resolve is None:
            raise WireError("array references are not accepted here")
        digest, dtype, shape = body
        check_dtype(dtype)
        return resolve(check_digest(digest), dtype, check_shape(shape))
    if tag == "$np" and isinstance(body, list) and len(body) == 2:
        return array_from_bytes(body[0], [], body[1])[()]
    if tag == "$tuple" and isinstance(body, list):
        return tuple(decode(v, resolve, _depth + 1) for v in body)
    if tag == "$dict" and isinstance(body, list):
        out = {}
        for item in body:
            if not isinstance(item, list) or len(item) != 2:
                raise WireError("a dict entry must be [key, value]")
            key = decode(item[0], resolve, _depth + 1)
            if not _is_key(key):
                raise WireError("a dict key must be a str, number, bool, None or a tuple of those")
            out[key] = decode(item[1], resolve, _depth + 1)
        return out
    raise WireError(f"unknown entry {_short(tag)} in a message")


def _is_key(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return True
    return isinstance(value, tuple) and all(_is_key(v) for v in value)


def _decode_dataclass(data: dict, resolve, depth: int):
    cls = wire_class(data.get("$type"))
    fields = data.get("fields")
    if not isinstance(fields, dict) or not all(isinstance(k, str) for k in fields):
        raise WireError(f"{cls.__name__}: 'fields' must map field names to values")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise WireError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {k: decode(v, resolve, depth + 1) for k, v in fields.items()}
    hints = _hints(cls)
    for k, v in values.items():
        if k in hints and not _conforms(v, hints[k]):
            raise WireError(f"{cls.__name__}.{k}: a {type(v).__name__} is not a {_hint_text(hints[k])}")
    try:
        return cls(**values)
    except WireError:
        raise
    except Exception as exc:  # the class's own checks (VipInputError) or a missing field
        raise WireError(f"{cls.__name__}: {exc}") from exc


_hint_cache: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _hint_cache:
        try:
            _hint_cache[cls] = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 -- an annotation that does not resolve: no type checks for this class
            _hint_cache[cls] = {}
    return _hint_cache[cls]


def _conforms(value, hint) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (outer types; sequences' items; lists and tuples alike)."""
    if hint in (Any, object):
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is np.ndarray:
        return isinstance(value, np.ndarray)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return len(set(args)) != 1 or all(_conforms(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            return False
        args = typing.get_args(hint)
        return not args or all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items())
    if hint in (list, tuple):
        return isinstance(value, (list, tuple))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    return True


def _hint_text(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def pack(obj) -> bytes:
    """msgpack bytes of already-encoded values (see :func:`encode`)."""
    import msgpack

    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes, max_bytes: int) -> Any:
    """msgpack values from ``data`` (at most ``max_bytes``); :class:`WireError` for anything malformed."""
    import msgpack

    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes is larger than the {max_bytes} allowed")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                               max_bin_len=max_bytes, max_str_len=max_bytes, max_array_len=max_bytes,
                               max_map_len=max_bytes, max_ext_len=0)
    except Exception as exc:
        raise WireError(f"not a valid message: {type(exc).__name__}: {exc}") from exc


def provenances(obj, _seen=None) -> list:
    """Every :class:`~napari_vip.worker.protocol.Provenance` inside a result (in fields, lists, dicts)."""
    from ..worker.protocol import Provenance

    found = []
    if isinstance(obj, Provenance):
        return [obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            found += provenances(getattr(obj, f.name))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found += provenances(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            found += provenances(v)
    return found
