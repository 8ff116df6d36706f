"""Part of a bitshuffle-LZ4 chunk decoded: only the blocks that hold a span of elements.

Blocks are compressed independently, so a region of a few rows of a 4M frame needs a few of its
~2000 blocks: counting ROIs of a pre-compressed frame then costs a fraction of decoding it.
The block lengths are followed up to the last block decoded (compiled where built), and every
block handed to bitshuffle lies inside the chunk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import bitshuffle
import numpy as np

from .bslz4 import block_table, walk_blocks
from .limits import byte_view, check_shape


def decode_span(
    chunk: Any, shape: Sequence[int], dtype: Any, start: int, stop: int
) -> tuple[np.ndarray, int]:
    """(elements, first): the flat elements of the blocks holding ``[start, stop)``, and the
    index of the first of them in the frame. ValueError on a chunk that does not fit."""
    dims = check_shape(shape)
    dt = np.dtype(dtype)
    view = byte_view(chunk)
    block_elements, n_blocks, tail = block_table(view, dims, dt)
    n = math.prod(dims)
    blocked = n - n % 8  # the last n % 8 elements are stored raw after the blocks
    start, stop = max(0, start), min(stop, n)
    if start >= stop:
        return np.empty(0, dt), start
    first = min(start // block_elements, n_blocks)
    last = min(-(-stop // block_elements), n_blocks)
    begin, ok = walk_blocks(view, first)
    end, ok_end = walk_blocks(view, last)
    with_tail = stop > blocked
    if not (ok and ok_end) or end + (tail if with_tail else 0) > len(view):
        raise ValueError(f"bitshuffle-LZ4 chunk truncated before block {last} of {n_blocks}")
    count = min(last * block_elements, blocked) - first * block_elements
    pieces = []
    if count > 0:
        payload = np.frombuffer(view, np.uint8, end - begin, begin)
        try:
            pieces.append(bitshuffle.decompress_lz4(payload, (count,), dt, block_elements))
        except RuntimeError as exc:
            raise ValueError(f"corrupt bitshuffle-LZ4 data: {exc.args[0]}") from None
    if with_tail:
        pieces.append(np.frombuffer(view, dt, n - blocked, end))
    elements = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return elements, first * block_elements
