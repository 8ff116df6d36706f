"""The internal (general case) format, as Zyla, Dhyana, Ximea, PI-MTE3 ... upstreams send it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..codecs.bslz4 import encode_chunk
from .internal import internal_series


def stins_series(frames: Sequence[np.ndarray], filename: str = "", compression: str = "bslz4",
                 metadata: dict[str, Any] | None = None, count: int | None = None,
                 save_raw: bool = True) -> Iterator[list[bytes]]:
    """header, ``count`` images cycling through ``frames``, series_end; msg_number 0, 1, ..."""
    images = [({"shape": list(f.shape), "type": f.dtype.name, "compression": compression},
               [encode_chunk(f) if compression == "bslz4" else f.tobytes()]) for f in frames]
    return internal_series(images, filename, metadata, count, save_raw)
