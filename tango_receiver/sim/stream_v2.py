"""DECTRIS stream v2 (CBOR) as a Pilatus4 / EIGER2 sends it, and replay of a real capture."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from ..codecs import cbor_v2

UNIQUE_ID = "01SIMULATEDSERIES000000000"


def stream_v2_series(channels: Mapping[str, Sequence[np.ndarray]], filename: str = "",
                     series_id: int = 1, count: int | None = None,
                     compression: str | None = "bslz4") -> Iterator[list[bytes]]:
    """start, ``count`` image messages (every channel in each), end."""
    first = next(iter(channels.values()))
    count = len(first) if count is None else count
    y, x = first[0].shape
    common = {"series_id": series_id, "series_unique_id": UNIQUE_ID}
    yield [cbor_v2.encode({"type": "start", **common, "channels": list(channels),
                           "number_of_images": count, "image_size_x": x, "image_size_y": y,
                           "detector_description": "Simulated DECTRIS stream v2",
                           "user_data": {"filename": filename}})]
    planes = {name: [cbor_v2.multidim(f, compression) for f in frames]
              for name, frames in channels.items()}
    for i in range(count):
        data = {name: p[i % len(p)] for name, p in planes.items()}
        yield [cbor_v2.encode({"type": "image", **common, "image_id": i,
                               "real_time": [i, 1000], "data": data})]
    yield [cbor_v2.encode({"type": "end", **common})]


def capture_v2(path: Path, filename: str = "") -> list[list[bytes]]:
    """The messages of a real stream v2 capture (pickled lists of parts), ready to replay.

    ``filename`` goes into the start message's ``user_data``; every other byte is as captured.
    """
    with zipfile.ZipFile(path) as zf:
        raw = zf.read(zf.namelist()[0])
    messages = []
    stream = io.BytesIO(raw)
    while stream.tell() < len(raw):
        messages.append([bytes(p) for p in pickle.load(stream)])
    messages[0] = [_with_filename(messages[0][0], filename)]
    return messages


def _with_filename(start: bytes, filename: str) -> bytes:
    msg: dict[str, Any] = dict(cbor2.loads(start, tag_hook=lambda tag, immutable: tag))
    user = msg.get("user_data")
    user = json.loads(user) if isinstance(user, str) else dict(user or {})
    msg["user_data"] = json.dumps(user | {"filename": filename})  # a JSON string, as captured
    return cbor2.dumps(cbor2.CBORTag(55799, msg))


def simulate(frames: Sequence[np.ndarray], filename: str, count: int,
             series: int) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return stream_v2_series({"threshold_1": frames}, filename, series_id=series, count=count)
