"""DECTRIS stream v2: CBOR messages whose images are RFC 8746 typed arrays.

Decoding keeps arrays as small descriptions (:class:`MultiDimArray`, :class:`TypedArray`,
:class:`Compressed`) over the message's own memory (cbor_view.py) instead of numpy arrays, so a
bitshuffle-LZ4 image goes to HDF5 as the compressed chunk it arrived as, uncopied;
:func:`to_numpy` decompresses only when pixels are needed. Encoding (the simulators) is cbor2's.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np

from . import bslz4, cbor_view
from .dectris import decode_lz4_chunk, encode_lz4_chunk
from .limits import byte_view, check_shape, dtype_of

SELF_DESCRIBE = 55799
MULTI_DIM = 40
COMPRESSED = 56500
_TYPED_FIRST, _TYPED_LAST, _TYPED_RESERVED = 64, 87, 76
_AS_IS = (0, 1)  # date/time as RFC 3339 text or epoch seconds: kept as sent
_FRAMED_SIZE = struct.Struct(">Q")  # both chunk framings start with the uncompressed size


@dataclass(frozen=True, slots=True)
class Compressed:
    algorithm: str
    elem_size: int
    data: memoryview | bytes


@dataclass(frozen=True, slots=True)
class TypedArray:
    dtype: np.dtype
    data: memoryview | bytes | Compressed


@dataclass(frozen=True, slots=True)
class MultiDimArray:
    shape: tuple[int, ...]
    array: TypedArray


def decode(data: Any) -> Mapping[str, Any]:
    """Decode one message from any buffer, which its byte strings keep referring to; malformed
    CBOR or tags raise ValueError."""
    try:
        message = cbor_view.loads(data, tag_hook=_tag_hook)
    except ValueError as exc:
        raise ValueError(f"invalid stream v2 message: {exc}") from None
    if not isinstance(message, Mapping):
        raise ValueError(f"stream v2 message is a {type(message).__name__}, not a map")
    return message


def to_numpy(value: MultiDimArray | TypedArray) -> np.ndarray:
    """Materialise an array; uncompressed payloads come back as read-only views, no copy."""
    if isinstance(value, MultiDimArray):
        return _materialise(value.array, check_shape(value.shape))
    if isinstance(value, TypedArray):
        return _materialise(value, None)
    raise ValueError(f"not a stream v2 array: {type(value).__name__}")


def multidim(array: np.ndarray, compression: str | None = "bslz4") -> cbor2.CBORTag:
    """Tag an array the way a DECTRIS detector does (tag 40 around a little-endian typed
    array, optionally inside tag 56500) for the simulator to put into a message."""
    dims = check_shape(np.shape(array))
    dt = np.asarray(array).dtype
    if dt.kind not in "uif":
        raise ValueError(f"cannot send dtype {dt} as a typed array")
    data = np.ascontiguousarray(array, dtype=dt.newbyteorder("<"))
    if compression is None:
        payload: Any = data.tobytes()
    elif compression == "bslz4":
        payload = cbor2.CBORTag(COMPRESSED, ["bslz4", dt.itemsize, bslz4.encode_chunk(data)])
    elif compression == "lz4":
        payload = cbor2.CBORTag(COMPRESSED, ["lz4", 0, encode_lz4_chunk(data)])
    else:
        raise ValueError(f"unknown compression {compression!r}; expected 'bslz4', 'lz4' or None")
    return cbor2.CBORTag(MULTI_DIM, [list(dims), cbor2.CBORTag(_typed_tag(dt), payload)])


def encode(message: Mapping[str, Any], compression: str | None = "bslz4") -> bytes:
    """Encode a message as a detector would; numpy arrays found in it go through
    :func:`multidim` with ``compression``."""

    def default(encoder: cbor2.CBOREncoder, value: Any) -> None:
        if isinstance(value, np.ndarray):
            encoder.encode(multidim(value, compression))
        elif isinstance(value, np.generic):
            encoder.encode(value.item())
        else:
            raise cbor2.CBOREncodeTypeError(f"cannot encode {type(value).__name__}")

    try:
        return cbor2.dumps(cbor2.CBORTag(SELF_DESCRIBE, dict(message)), default=default)
    except cbor2.CBORError as exc:
        raise ValueError(f"cannot encode stream v2 message: {exc}") from exc


def _tag_hook(tag: int, value: Any) -> Any:
    if tag == COMPRESSED:
        return _compressed(value)
    if _TYPED_FIRST <= tag <= _TYPED_LAST:
        if not isinstance(value, (memoryview, bytes, Compressed)):
            raise ValueError(f"typed array tag {tag} holds a {type(value).__name__}")
        return TypedArray(_typed_dtype(tag), value)
    if tag == MULTI_DIM:
        return _multi_dim(value)
    if tag in _AS_IS:
        return value
    return cbor2.CBORTag(tag, value)


def _compressed(value: Any) -> Compressed:
    if not (isinstance(value, Sequence) and len(value) == 3):
        raise ValueError("tag 56500 must hold [algorithm, elem_size, bytes]")
    algorithm, elem_size, data = value
    if not (
        isinstance(algorithm, str)
        and type(elem_size) is int
        and isinstance(data, (memoryview, bytes))
    ):
        raise ValueError("tag 56500 must hold [algorithm, elem_size, bytes]")
    return Compressed(algorithm, elem_size, data)


def _multi_dim(value: Any) -> MultiDimArray:
    if not (isinstance(value, Sequence) and len(value) == 2):
        raise ValueError("tag 40 must hold [shape, typed array]")
    shape, array = value
    if not (isinstance(shape, Sequence) and all(type(n) is int for n in shape)):
        raise ValueError(f"tag 40 shape must be a list of integers, got {shape!r}")
    if not isinstance(array, TypedArray):
        raise ValueError("tag 40 must hold a typed array (tags 64..87)")
    return MultiDimArray(tuple(shape), array)


def _typed_dtype(tag: int) -> np.dtype:
    """RFC 8746: tag = 0b010_f_s_e_ll (float, signed, little-endian, log2 of the size)."""
    if tag == _TYPED_RESERVED:
        raise ValueError("typed array tag 76 is reserved")
    bits = tag - _TYPED_FIRST
    is_float, signed, little, ll = bits >> 4 & 1, bits >> 3 & 1, bits >> 2 & 1, bits & 3
    if is_float:
        name = f"float{16 << ll}"
    else:
        name = f"{'int' if signed else 'uint'}{8 << ll}"
    return dtype_of(name, "<" if little else ">")


def _typed_tag(dt: np.dtype) -> int:
    """Little-endian typed array tag for a dtype (the byte-order bit is 0 for 8-bit ints)."""
    log_size = dt.itemsize.bit_length() - 1
    if dt.kind == "f":
        return _TYPED_FIRST + 16 + 4 + log_size - 1
    signed = 8 if dt.kind == "i" else 0
    little = 4 if dt.itemsize > 1 else 0
    return _TYPED_FIRST + signed + little + log_size


def _materialise(array: TypedArray, dims: tuple[int, ...] | None) -> np.ndarray:
    dt, data = array.dtype, array.data
    if isinstance(data, Compressed):
        if dims is None:
            dims = _framed_dims(data.data, dt)
        if data.algorithm == "bslz4":
            if data.elem_size != dt.itemsize:
                raise ValueError(
                    f"bslz4 element size {data.elem_size} does not match {dt} ({dt.itemsize} bytes)"
                )
            return bslz4.decode_chunk(data.data, dims, dt)
        if data.algorithm == "lz4":
            raw = decode_lz4_chunk(data.data, math.prod(dims) * dt.itemsize)
            return np.frombuffer(raw, dtype=dt).reshape(dims)
        raise ValueError(f"unknown stream v2 compression {data.algorithm!r}")
    if dims is None:
        if len(data) % dt.itemsize:
            raise ValueError(f"typed array of {len(data)} bytes is not a whole number of {dt}")
        dims = check_shape((len(data) // dt.itemsize,))
    expected = math.prod(dims) * dt.itemsize
    if len(data) != expected:
        raise ValueError(
            f"typed array holds {len(data)} bytes but shape {dims} of {dt} needs {expected}"
        )
    return np.frombuffer(data, dtype=dt).reshape(dims)


def _framed_dims(chunk: bytes | memoryview, dt: np.dtype) -> tuple[int, ...]:
    """Length of a compressed 1-D typed array, read from its chunk header."""
    view = byte_view(chunk)
    if len(view) < _FRAMED_SIZE.size:
        raise ValueError(f"compressed typed array of {len(view)} bytes has no size header")
    (nbytes,) = _FRAMED_SIZE.unpack_from(view)
    if nbytes % dt.itemsize:
        raise ValueError(f"compressed typed array of {nbytes} bytes is not a whole number of {dt}")
    return check_shape((nbytes // dt.itemsize,))
