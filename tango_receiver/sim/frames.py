"""Synthetic detector images: Poisson counts, sparse like real diffraction data."""

from __future__ import annotations

import numpy as np


def synthetic_frames(
    count: int, shape: tuple[int, ...], dtype: str = "uint32", rate: float = 0.05, seed: int = 0
) -> list[np.ndarray]:
    """``count`` distinct frames; ``rate`` is the mean photons per pixel (sparsity)."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    frames = []
    for _ in range(count):
        counts = rng.poisson(rate, size=shape)
        if kind.kind == "f":
            frames.append(counts.astype(kind))
        else:
            frames.append(np.minimum(counts, np.iinfo(kind).max).astype(kind))
    return frames
