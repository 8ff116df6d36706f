"""A Hamamatsu ORCA-Lightning in its 12-bit mode: frames packed as GenICam Mono12p."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..codecs.mono12p import pack
from .internal import encoded_series


def orca_series(
    frames: Sequence[np.ndarray],
    filename: str = "",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
) -> Iterator[list[bytes]]:
    """header, ``count`` mono12p images (values 0..4095, cycling through ``frames``), series_end."""
    images = [
        ({"shape": list(f.shape), "type": "mono12p", "compression": "none"}, [pack(f)])
        for f in frames
    ]
    return encoded_series(images, filename, metadata, count)


TWELVE_BIT = 4095  # where a 12-bit (Mono12p) sensor saturates


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return orca_series(
        [f.clip(0, TWELVE_BIT) for f in frames], filename, metadata={"series": series}, count=count
    )
