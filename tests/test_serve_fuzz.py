"""Property-based fuzzing of the server's wire: arbitrary bytes, arbitrary nested structures and arbitrary
``.npy`` uploads give a clean error or a valid object, nothing else; the live server answers every malformed
frame with ``failed`` (or closes with a reason when no job id can be read) and every malformed upload with a 4xx."""

from __future__ import annotations

import dataclasses
import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_vip.serve.app import read_npy
from napari_vip.serve.policy import Refused
from napari_vip.serve.wire import (
    DTYPES,
    WIRE_TYPES,
    WireError,
    check_shape,
    decode,
    encode,
    pack,
    unpack,
    wire_class,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAGS = ["$nd", "$ref", "$np", "$tuple", "$dict", "$type", "fields", "op", "job"]


class UnknownArray(LookupError):
    """What the test's resolver raises for a digest it does not hold (the server asks the client to upload)."""


def resolver(digest, dtype, shape):
    raise UnknownArray(digest)


def is_valid_value(value) -> bool:
    """Only the values :func:`encode` can make: plain values, containers of them, arrays and registered types."""
    if value is None or isinstance(value, (bool, int, float, str, np.ndarray, np.generic)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_valid_value(v) for v in value)
    if isinstance(value, dict):
        return all(is_valid_value(k) and is_valid_value(v) for k, v in value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value) in {wire_class(n) for n in WIRE_TYPES}
    return False


def decode_or_refuse(data):
    try:
        value = decode(data, resolver)
    except (WireError, UnknownArray):
        return None
    assert is_valid_value(value), value
    encode(value)  # whatever decodes can be sent back
    return value


scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.binary(max_size=24), st.sampled_from(TAGS + list(DTYPES)),
                    st.sampled_from(list(WIRE_TYPES)))
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(TAGS) | st.text(max_size=6), inner, max_size=3),
        st.builds(lambda tag, body: {tag: body}, st.sampled_from(TAGS), inner),
        st.builds(lambda name, fields: {"$type": name, "fields": fields}, st.sampled_from(list(WIRE_TYPES)),
                  st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    ),
    max_leaves=30,
)
shapes = st.lists(st.one_of(st.integers(-3, 5), st.integers(2 ** 30, 2 ** 63 - 1), st.just(0)), max_size=70)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_to_an_error_or_a_value(data):
    try:
        values = unpack(data, 1 << 16)
    except WireError:
        return
    decode_or_refuse(values)


@FUZZ
@given(structures)
def test_arbitrary_structures_decode_to_an_error_or_a_value(data):
    decode_or_refuse(data)
    try:
        frame = pack(data)
    except (TypeError, ValueError, OverflowError):  # msgpack cannot carry it (integers beyond 64 bits)
        return
    decode_or_refuse(unpack(frame, 1 << 20))


@FUZZ
@given(st.sampled_from(DTYPES), shapes, st.binary(max_size=64))
def test_arrays_with_any_shape_are_refused_unless_their_bytes_match(dtype, shape, data):
    value = decode_or_refuse({"$nd": [dtype, shape, data]})
    if value is not None:
        assert value.shape == tuple(shape) and value.nbytes == len(data)


def test_the_reported_malformed_messages_are_refused_with_a_reason():
    cases = {
        "element count overflowing int64": {"$nd": ["|u1", [2 ** 32, 2 ** 32], b""]},
        "two keys and no $type": {"$nd": 1, "$tuple": []},
        "$ref digest that is a list": {"$ref": [["a"], "|u1", [1]]},
        "$ref digest that is a dict": {"$ref": [{"a": 1}, "|u1", [1]]},
        "$dict key holding a list": {"$dict": [[[1, 2], 3]]},
        "$dict key that is a tuple holding a list": {"$dict": [[{"$tuple": [[1]]}, 3]]},
        "$type that is a list": {"$type": ["ClassifyRequest"], "fields": {}},
    }
    for what, data in cases.items():
        with pytest.raises(WireError):
            decode(data, resolver)
        assert decode_or_refuse(data) is None, what
    with pytest.raises(WireError, match="more than"):
        check_shape([2 ** 32, 2 ** 32])  # 2**64 wraps to 0 as int64


def npy_with_header(dtype: str, shape, body: bytes, version=(1, 0)) -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    size = (2 if version == (1, 0) else 4)
    pad = (-(10 + size - 4 + len(header) + 1)) % 64
    header = header + b" " * pad + b"\n"
    fmt = "<H" if version == (1, 0) else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(header)) + header + body


@FUZZ
@given(st.sampled_from(DTYPES), shapes, st.binary(max_size=64))
def test_npy_uploads_with_any_header_are_refused_unless_they_match(dtype, shape, body):
    data = npy_with_header(dtype, shape, body)
    try:
        arr = read_npy(data, 1 << 20)
    except Refused as exc:
        assert 400 <= exc.status < 500
        return
    assert arr.shape == tuple(shape) and arr.nbytes == len(body) and arr.size > 0


@FUZZ
@given(st.binary(max_size=256))
def test_arbitrary_upload_bytes_are_refused_or_read(data):
    for payload in (data, b"\x93NUMPY\x01\x00" + data):
        try:
            read_npy(payload, 1 << 20)
        except Refused as exc:
            assert 400 <= exc.status < 500


def test_the_reported_uploads_are_refused_and_a_good_one_is_read():
    for shape in ([2 ** 32, 2 ** 32], [-1, -8], [0, 4], [1] * 70, [-4]):
        data = npy_with_header("|u1", shape, b"\x00" * 8)
        with pytest.raises(Refused):
            read_npy(data, 1 << 20)
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.uint8).reshape(3, 4))
    np.testing.assert_array_equal(read_npy(buf.getvalue(), 1 << 20), np.arange(12).reshape(3, 4))
