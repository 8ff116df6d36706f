"""Guards every codec applies to wire input before it allocates or hands a buffer to C code,
so a lying header can neither exhaust memory nor make a decoder read out of bounds."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

# 2**28 pixels (1 GiB of uint32) is well above the largest detector frame (EIGER2 16M, ~18e6 px).
MAX_PIXELS = 2**28
# The widest element a detector sends: any uncompressed size above this is a lie.
MAX_ITEMSIZE = 8
MAX_NBYTES = MAX_PIXELS * MAX_ITEMSIZE

DTYPE_NAMES = frozenset(
    {
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "float32",
        "float64",
    }
)


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a frame shape that came off the wire; returns it as a tuple of ints."""
    try:
        dims = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of integers, got {shape!r}") from None
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"shape must have 1 to 3 dimensions, got {dims}")
    if any(n <= 0 for n in dims):
        raise ValueError(f"shape dimensions must be positive, got {dims}")
    if math.prod(dims) > MAX_PIXELS:
        raise ValueError(f"shape {dims} has {math.prod(dims)} pixels, more than {MAX_PIXELS}")
    return dims


def dtype_of(name: str, byteorder: str = "<") -> np.dtype:
    """Map a detector's type name to a numeric dtype; anything numpy could not fill from raw
    bytes safely (object, str, void, structured) is refused."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"unsupported pixel type {name!r}; expected one of {sorted(DTYPE_NAMES)}")
    if byteorder == "<":
        return np.dtype(name).newbyteorder("<")
    if byteorder == ">":
        return np.dtype(name).newbyteorder(">")
    raise ValueError(f"byte order must be '<' or '>', got {byteorder!r}")


@functools.lru_cache(maxsize=64)
def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, which numpy works out in Python on every access, and it is asked per
    frame."""
    return dtype.name


def byte_view(buffer: Any) -> memoryview:
    """Flat bytes over any buffer (bytes, memoryview, numpy array, zmq.Frame), without a copy."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise ValueError(f"expected a buffer, got {type(buffer).__name__}") from None
    if not view.c_contiguous:
        raise ValueError("expected a contiguous buffer")
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")
