"""Binning for the live view: a preview needs fewer pixels, not every count."""

from __future__ import annotations

import numpy as np


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the last two axes, as float32; rows and columns
    that do not fill a whole block are cropped. ``factor == 1`` returns the input as is.

    Sums the ``factor`` rows of each band in one reduction over whole rows, then the ``factor``
    columns of each block with whole-array adds: ``reshape(...).mean(axis=(-3, -1))`` reduces
    with strided inner loops, and casting each row before adding it costs a pass of its own
    (timings: benchmarks/LOG.md).
    """
    if factor < 1:
        raise ValueError(f"downsampling factor must be at least 1, got {factor}")
    if factor == 1:
        return array
    if array.ndim < 2:
        raise ValueError(f"downsampling needs at least 2 dimensions, got shape {array.shape}")
    *lead, rows, cols = array.shape
    out_rows, out_cols = rows // factor, cols // factor
    if out_rows == 0 or out_cols == 0:
        raise ValueError(f"downsampling factor {factor} is larger than the image {rows}x{cols}")
    bands = array[..., : out_rows * factor, : out_cols * factor].reshape(
        *lead, out_rows, factor, out_cols * factor
    )
    row_sums = bands.sum(axis=-2, dtype=np.float32)
    blocks = row_sums.reshape(*lead, out_rows, out_cols, factor)
    out = blocks[..., 0].copy()
    for j in range(1, factor):
        out += blocks[..., j]
    out /= np.float32(factor * factor)
    return out
