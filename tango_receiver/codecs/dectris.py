"""DECTRIS payload encodings: the stream v1 ``encoding`` string and the two LZ4 framings.

Stream v1 plain ``lz4`` is one bare LZ4 block (no size prefix: the size follows from shape and
type); stream v2 ``lz4`` (CBOR tag 56500) uses the HDF5 LZ4 filter framing instead, so that a
chunk can be written to HDF5 untouched. Both live here so the difference stays visible.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import bitshuffle
import lz4.block
import numpy as np

from .bslz4 import default_block_elements
from .limits import MAX_NBYTES, byte_view, check_shape

#: stream v1: parts of a dheader-1.0 message per header_detail, not counting the optional appendix
V1_HEADER_PARTS = {"all": 8, "basic": 2, "none": 1}

_ENCODING = re.compile(r"(?:bs(8|16|32|64))?(?:-?(lz4))?([<>])?")
_LZ4_HEADER = struct.Struct(">QI")
_LZ4_LEN = struct.Struct(">I")
# The HDF5 LZ4 filter's own default: one block per chunk for any realistic frame.
LZ4_DEFAULT_BLOCK_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class Encoding:
    bitshuffle_bits: int | None
    lz4: bool
    byteorder: Literal["<", ">"]


def parse_encoding(text: str) -> Encoding:
    """Parse ``[bs<N>][[-]lz4][<|>]``; a missing byte order means little-endian, the only
    order DECTRIS hardware sends."""
    match = _ENCODING.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"unknown DECTRIS encoding {text!r}; expected [bs<N>][[-]lz4][<|>]")
    bits, lz4_flag, order = match.groups()
    if "-" in text and bits is None:
        raise ValueError(f"unknown DECTRIS encoding {text!r}: '-' must follow bs<N>")
    return Encoding(int(bits) if bits else None, lz4_flag is not None, ">" if order == ">" else "<")


def is_bslz4(enc: Encoding) -> bool:
    """True when the blob is a bitshuffle-LZ4 chunk that HDF5 can store as it came."""
    return enc.bitshuffle_bits is not None and enc.lz4


def lz4_block_decompress(blob: Any, nbytes: int) -> bytes:
    """Decompress a stream v1 ``lz4`` blob: one LZ4 block of exactly ``nbytes``."""
    _check_nbytes(nbytes)
    try:
        out = lz4.block.decompress(blob, uncompressed_size=nbytes)
    except (lz4.block.LZ4BlockError, TypeError, ValueError) as exc:
        raise ValueError(f"corrupt LZ4 block: {exc}") from None
    if len(out) != nbytes:  # python-lz4 returns a short result instead of failing
        raise ValueError(f"LZ4 block holds {len(out)} bytes, expected {nbytes}")
    return out


def bitunshuffle(blob: Any, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Undo bitshuffle without LZ4 (``bs32<``), with the 8192-byte blocks DECTRIS uses."""
    dims = check_shape(shape)
    dt = np.dtype(dtype)
    if dt.kind not in "uif":
        raise ValueError(f"cannot bitshuffle dtype {dt}")
    view = byte_view(blob)
    expected = math.prod(dims) * dt.itemsize
    if view.nbytes != expected:
        raise ValueError(
            f"bitshuffled blob holds {view.nbytes} bytes but shape {dims} of {dt} needs {expected}"
        )
    shuffled = np.frombuffer(view, dtype=dt).reshape(dims)
    return bitshuffle.bitunshuffle(shuffled, default_block_elements(dt.itemsize))


def encode_lz4_chunk(data: Any, block_bytes: int = LZ4_DEFAULT_BLOCK_BYTES) -> bytes:
    """Compress into the HDF5 LZ4 filter framing (stream v2 ``lz4``), as H5Zlz4.c does."""
    view = byte_view(data)
    if block_bytes <= 0:
        raise ValueError(f"LZ4 block size must be positive, got {block_bytes}")
    block_bytes = min(block_bytes, view.nbytes) or 1
    parts = [_LZ4_HEADER.pack(view.nbytes, block_bytes)]
    for start in range(0, view.nbytes, block_bytes):
        raw = view[start : start + block_bytes]
        packed = lz4.block.compress(raw, store_size=False)
        if len(packed) >= len(raw):  # incompressible: the filter stores the block as is
            packed = raw.tobytes()
        parts += [_LZ4_LEN.pack(len(packed)), packed]
    return b"".join(parts)


def decode_lz4_chunk(chunk: Any, nbytes: int) -> bytes:
    """Decompress an HDF5 LZ4 filter chunk that must hold exactly ``nbytes``.

    Every length is checked against the buffer before use: the C filter does not, and a block
    size of zero would make it loop forever.
    """
    _check_nbytes(nbytes)
    view = byte_view(chunk)
    if view.nbytes < _LZ4_HEADER.size:
        raise ValueError(f"LZ4 chunk of {view.nbytes} bytes is shorter than its header")
    total, block_bytes = _LZ4_HEADER.unpack_from(view)
    if total != nbytes:
        raise ValueError(f"LZ4 chunk holds {total} bytes, expected {nbytes}")
    if block_bytes == 0:
        raise ValueError("LZ4 chunk has a block size of zero")
    parts = []
    pos, done = _LZ4_HEADER.size, 0
    while done < total:
        size = min(block_bytes, total - done)
        if pos + _LZ4_LEN.size > view.nbytes:
            raise ValueError(f"LZ4 chunk truncated at byte {pos}, {total - done} bytes missing")
        (packed_len,) = _LZ4_LEN.unpack_from(view, pos)
        pos += _LZ4_LEN.size
        if pos + packed_len > view.nbytes:
            raise ValueError(
                f"LZ4 chunk truncated: block of {packed_len} bytes at byte {pos}, "
                f"only {view.nbytes - pos} left"
            )
        packed = view[pos : pos + packed_len]
        stored = packed_len == size  # the filter keeps incompressible blocks as they are
        parts.append(packed.tobytes() if stored else lz4_block_decompress(packed, size))
        pos += packed_len
        done += size
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _check_nbytes(nbytes: int) -> None:
    if not 0 < nbytes <= MAX_NBYTES:
        raise ValueError(f"uncompressed size {nbytes} is outside 1..{MAX_NBYTES} bytes")
