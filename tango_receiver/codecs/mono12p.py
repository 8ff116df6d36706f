"""GenICam Mono12p (Orca Lightning): two 12-bit pixels in three bytes, least significant
bits first: pixel0 = b0 | (b1 & 0x0F) << 8, pixel1 = b1 >> 4 | b2 << 4."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .limits import byte_view, check_shape


def unpack(buf: Any, shape: Sequence[int]) -> np.ndarray:
    """Unpack a frame of ``prod(shape)`` pixels (an even count) into uint16."""
    dims = check_shape(shape)
    n_pixels = math.prod(dims)
    if n_pixels % 2:
        raise ValueError(f"Mono12p needs an even pixel count, shape {dims} has {n_pixels}")
    view = byte_view(buf)
    expected = n_pixels // 2 * 3
    if len(view) != expected:
        raise ValueError(f"Mono12p frame of shape {dims} needs {expected} bytes, got {len(view)}")
    triplets = np.frombuffer(view, dtype=np.uint8).reshape(-1, 3).astype(np.uint16)
    out = np.empty((n_pixels // 2, 2), dtype=np.uint16)
    np.bitwise_or(triplets[:, 0], (triplets[:, 1] & 0x0F) << 8, out=out[:, 0])
    np.bitwise_or(triplets[:, 1] >> 4, triplets[:, 2] << 4, out=out[:, 1])
    return out.reshape(dims)


def pack(array: np.ndarray) -> bytes:
    """Inverse of :func:`unpack`, for the simulator; values must fit 12 bits."""
    data = np.asarray(array)
    if data.dtype.kind not in "iu":
        raise ValueError(f"Mono12p packs integers, got {data.dtype}")
    if data.size % 2:
        raise ValueError(f"Mono12p needs an even pixel count, got {data.size}")
    if data.size and (data.min() < 0 or data.max() > 0x0FFF):
        raise ValueError("Mono12p pixel values must be within 0..4095")
    pairs = data.astype(np.uint16).reshape(-1, 2)
    first, second = pairs[:, 0], pairs[:, 1]
    out = np.empty((len(pairs), 3), dtype=np.uint8)
    out[:, 0] = first & 0xFF
    out[:, 1] = (first >> 8) | ((second & 0x0F) << 4)
    out[:, 2] = second >> 4
    return out.tobytes()
