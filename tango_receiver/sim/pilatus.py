"""A DECTRIS Pilatus as the existing deployments receive it: every image a whole CBF file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..codecs.cbf import encode_cbf
from .internal import encoded_series


def pilatus_series(frames: Sequence[np.ndarray], filename: str = "",
                   metadata: dict[str, Any] | None = None,
                   count: int | None = None) -> Iterator[list[bytes]]:
    """header, ``count`` CBF images (int32, cycling through ``frames``), series_end."""
    images = [({"shape": list(f.shape), "type": "int32", "compression": "cbf"}, [encode_cbf(f)])
              for f in frames]
    return encoded_series(images, filename, metadata, count)


def simulate(frames: Sequence[np.ndarray], filename: str, count: int,
             series: int) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return pilatus_series(frames, filename, metadata={"series": series}, count=count)
