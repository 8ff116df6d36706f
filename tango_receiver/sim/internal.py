"""The internal (general case) format, as Zyla, Dhyana, Ximea, PI-MTE3 ... upstreams send it.

The header / series_end framing and the ``msg_number`` sequence are the same for every detector
that speaks the internal format (Pilatus, Orca, Lambda modules, Xspress3): only an image's
header fields and blobs differ, and those come from each simulator (``encoded_series``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..codecs.bslz4 import encode_chunk

Encoded = tuple[dict[str, Any], list[bytes]]  # image header fields (shape, type, ...), blobs


def encoded_series(
    images: Sequence[Encoded],
    filename: str = "",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
    save_raw: bool = True,
) -> Iterator[list[bytes]]:
    """header, ``count`` images cycling through ``images``, series_end; msg_number 0, 1, ..."""
    count = len(images) if count is None else count
    head: dict[str, Any] = {
        "htype": "header",
        "msg_number": 0,
        "filename": filename,
        "nimages": count,
    }
    if not save_raw:
        head["save_raw"] = False
    yield [_j(head)] + ([_j(metadata)] if metadata else [])
    for i in range(count):
        fields, blobs = images[i % len(images)]
        yield [_j({"htype": "image", "msg_number": i + 1, "frame": i} | fields), *blobs]
    yield [_j({"htype": "series_end", "msg_number": count + 1})]


def internal_series(
    frames: Sequence[np.ndarray],
    filename: str = "",
    compression: str = "bslz4",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
    save_raw: bool = True,
) -> Iterator[list[bytes]]:
    """header, ``count`` images cycling through ``frames``, series_end; msg_number 0, 1, ..."""
    images = [
        (
            {"shape": list(f.shape), "type": f.dtype.name, "compression": compression},
            [encode_chunk(f) if compression == "bslz4" else f.tobytes()],
        )
        for f in frames
    ]
    return encoded_series(images, filename, metadata, count, save_raw)


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return internal_series(frames, filename, count=count, metadata={"series": series})


def _j(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()
