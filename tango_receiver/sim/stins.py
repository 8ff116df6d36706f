"""The internal (general case) format, as Zyla, Dhyana, Ximea, PI-MTE3 ... upstreams send it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..codecs.bslz4 import encode_chunk


def stins_series(frames: Sequence[np.ndarray], filename: str = "", compression: str = "bslz4",
                 metadata: dict[str, Any] | None = None, count: int | None = None,
                 save_raw: bool = True) -> Iterator[list[bytes]]:
    """header, ``count`` images cycling through ``frames``, series_end; msg_number 0, 1, ..."""
    count = len(frames) if count is None else count
    head: dict[str, Any] = {"htype": "header", "msg_number": 0, "filename": filename}
    if not save_raw:
        head["save_raw"] = False
    yield [json.dumps(head).encode()] + ([json.dumps(metadata).encode()] if metadata else [])
    blobs = [encode_chunk(f) if compression == "bslz4" else f.tobytes() for f in frames]
    for i in range(count):
        frame = frames[i % len(frames)]
        yield [json.dumps({"htype": "image", "msg_number": i + 1, "frame": i,
                           "shape": list(frame.shape), "type": frame.dtype.name,
                           "compression": compression}).encode(), blobs[i % len(blobs)]]
    yield [json.dumps({"htype": "series_end", "msg_number": count + 1}).encode()]
