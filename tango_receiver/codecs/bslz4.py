"""Bitshuffle-LZ4 chunks in the HDF5 filter framing (what EIGERs send and HDF5 stores as is).

A chunk is an 8-byte big-endian uncompressed size, a 4-byte big-endian block size in bytes, then
one 4-byte big-endian compressed length + LZ4 data per block, then the last ``n % 8`` elements
raw. bitshuffle's C decoder trusts those lengths and reads past the buffer (it segfaults on a
truncated chunk), so the length table is walked here before the C code sees the data.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import bitshuffle
import numpy as np

from .limits import MAX_NBYTES, byte_view, check_shape

HEADER = struct.Struct(">QI")
_BLOCK_LEN = struct.Struct(">I")
_TARGET_BLOCK_BYTES = 8192  # what DECTRIS detectors and bitshuffle's own default use
_BLOCKED_MULT = 8  # bitshuffle transposes groups of 8 elements; the tail is stored raw
_HEADERLESS_BLOCKS = 1 << 14  # a refusal's diagnosis follows at most this many (16M: 8,835)


def default_block_elements(itemsize: int) -> int:
    """Block size in elements that gives DECTRIS' 8192-byte blocks."""
    if itemsize not in (1, 2, 4, 8):
        raise ValueError(f"bitshuffle element size must be 1, 2, 4 or 8 bytes, got {itemsize}")
    return _TARGET_BLOCK_BYTES // itemsize


def encode_chunk(array: np.ndarray) -> bytes:
    """Compress to a complete chunk, header included, ready for a direct HDF5 chunk write."""
    data = np.ascontiguousarray(array)
    if data.dtype.kind not in "uif":
        raise ValueError(f"cannot bitshuffle dtype {data.dtype}")
    block_elements = default_block_elements(data.dtype.itemsize)
    blocks = bitshuffle.compress_lz4(data, block_elements)
    header = HEADER.pack(data.nbytes, block_elements * data.dtype.itemsize)
    return b"".join((header, blocks))  # one copy: tobytes() then + would be two


def chunk_header(chunk: Any) -> tuple[int, int]:
    """Read (uncompressed size, block size), both in bytes, refusing impossible values."""
    view = byte_view(chunk)
    if len(view) < HEADER.size:
        raise ValueError(
            f"bitshuffle-LZ4 chunk of {len(view)} bytes is shorter than its "
            f"{HEADER.size}-byte header"
        )
    nbytes, block_bytes = HEADER.unpack_from(view)
    if nbytes > MAX_NBYTES:
        raise ValueError(f"bitshuffle-LZ4 chunk claims {nbytes} bytes, more than {MAX_NBYTES}")
    if block_bytes == 0 or block_bytes % _BLOCKED_MULT:
        raise ValueError(
            f"bitshuffle-LZ4 block size {block_bytes} is not a positive "
            f"multiple of {_BLOCKED_MULT} bytes"
        )
    return nbytes, block_bytes


def check_chunk(chunk: Any, shape: Sequence[int], dtype: Any, verify: bool = False) -> None:
    """Everything :func:`decode_chunk` checks, without decompressing: for a chunk written to
    HDF5 as it came, since bitshuffle's HDF5 filter would crash the reader on a bad length.
    The block lengths are followed and must end where the chunk ends, so a chunk cut short
    is refused (compiled, a microsecond or so for a 4 MB frame: benchmarks/LOG.md).

    ``verify=True`` (``verify_chunks``) also decompresses it, into memory thrown away: a block
    table that is corrupt yet adds up, or corrupt LZ4 data, would fail the reader as well.
    """
    if verify:
        decode_chunk(chunk, shape, dtype)
    else:
        _validate(chunk, shape, dtype)


def decode_chunk(chunk: Any, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """Decompress a chunk from any buffer (bytes, memoryview, numpy, zmq.Frame) without a copy
    of the input; every inconsistency is a ValueError, never a crash."""
    view, dims, dt, block_elements = _validate(chunk, shape, dtype)
    payload = np.frombuffer(view, dtype=np.uint8, offset=HEADER.size)
    try:
        return bitshuffle.decompress_lz4(payload, dims, dt, block_elements)
    except RuntimeError as exc:  # bitshuffle reports corrupt LZ4 data this way
        raise ValueError(f"corrupt bitshuffle-LZ4 data: {exc.args[0]}") from None


def walk_blocks_py(view: memoryview, n_blocks: int) -> tuple[int, bool]:
    """(position after the last block, True), or (position of the length that lies past the
    end, False). Lengths are never negative, so a position past the end makes the next read
    fail: one check per block is enough. The compiled walk (``_blockwalk``) does the same,
    much faster; this one runs where it was not built."""
    pos = HEADER.size
    unpack = _BLOCK_LEN.unpack_from
    try:
        for _ in range(n_blocks):
            pos += _BLOCK_LEN.size + unpack(view, pos)[0]
    except struct.error:
        return pos, False
    return pos, True


try:
    from ._blockwalk import walk as walk_blocks
except ImportError:  # a build without a C compiler
    walk_blocks = walk_blocks_py


def _validate(
    chunk: Any, shape: Sequence[int], dtype: Any
) -> tuple[memoryview, tuple[int, ...], np.dtype, int]:
    dims = check_shape(shape)
    dt = np.dtype(dtype)
    view = byte_view(chunk)
    try:
        block_elements, n_blocks, tail = block_table(view, dims, dt)
    except ValueError:
        if headerless(view, math.prod(dims), dt.itemsize):
            raise ValueError(HEADERLESS) from None
        raise
    _check_block_table(view, n_blocks, tail)
    return view, dims, dt, block_elements


HEADERLESS = (
    "the 12-byte bitshuffle-LZ4 chunk header (8-byte big-endian uncompressed size, "
    "4-byte big-endian block size) is missing: the data looks like the raw output of "
    "bitshuffle.compress_lz4(); send the header before it, as HDF5's filter stores it"
)


def headerless(view: memoryview, n_elements: int, itemsize: int) -> bool:
    """Whether the data is blocks as ``bitshuffle.compress_lz4()`` returns them, without the
    chunk header: its block lengths, read from byte 0, end exactly before the raw tail. Only
    asked once a chunk was refused, to say why in words the sender can act on."""
    end = len(view) - (n_elements % _BLOCKED_MULT) * itemsize
    pos = blocks = 0
    while (
        pos + _BLOCK_LEN.size <= end
        and blocks < _HEADERLESS_BLOCKS
        and blocks * _BLOCKED_MULT < n_elements
    ):
        pos += _BLOCK_LEN.size + _BLOCK_LEN.unpack_from(view, pos)[0]
        blocks += 1
    return blocks > 0 and pos == end


def block_table(chunk: Any, shape: tuple[int, ...], dt: np.dtype) -> tuple[int, int, int]:
    """(elements per block, blocks, raw tail bytes) that a chunk with this header holds for a
    frame of ``shape`` x ``dt``: what a decoder will read, so every other check follows it."""
    if dt.kind not in "uif":
        raise ValueError(f"cannot bitshuffle dtype {dt}")
    nbytes, block_bytes = chunk_header(chunk)
    expected = math.prod(shape) * dt.itemsize
    if nbytes != expected:
        raise ValueError(
            f"bitshuffle-LZ4 chunk holds {nbytes} bytes but shape {shape} of {dt} needs {expected}"
        )
    if block_bytes % (_BLOCKED_MULT * dt.itemsize):
        raise ValueError(
            f"bitshuffle-LZ4 block size {block_bytes} bytes is not a multiple of "
            f"{_BLOCKED_MULT} elements of {dt.itemsize} bytes"
        )
    n_elements = nbytes // dt.itemsize
    # A block larger than the data means one block (small frames keep the 8192-byte default);
    # capping it keeps a corrupt 4 GiB block size from overflowing bitshuffle's C int.
    whole_data = -(-n_elements // _BLOCKED_MULT) * _BLOCKED_MULT
    block_elements = min(block_bytes // dt.itemsize, whole_data)
    full_blocks, rest = divmod(n_elements, block_elements)
    last_block = rest - rest % _BLOCKED_MULT
    n_blocks = full_blocks + (1 if last_block else 0)
    tail = (n_elements % _BLOCKED_MULT) * dt.itemsize
    return block_elements, n_blocks, tail


def _check_block_table(view: memoryview, n_blocks: int, tail: int) -> None:
    """Follow the block lengths the way bitshuffle will: they and the raw tail must end
    exactly where the chunk ends (HDF5's filter writes nothing after them)."""
    end = len(view)
    pos, complete = walk_blocks(view, n_blocks)
    if not complete:
        raise ValueError(
            f"bitshuffle-LZ4 chunk truncated: a block of the {n_blocks} starts "
            f"at byte {pos}, past the end at {end}"
        )
    if pos + tail != end:
        cut = "truncated" if pos + tail > end else "longer than its blocks"
        raise ValueError(
            f"bitshuffle-LZ4 chunk {cut}: {n_blocks} blocks and {tail} raw tail "
            f"bytes take {pos + tail} bytes, the chunk has {end}"
        )
