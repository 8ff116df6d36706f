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


def stream_v2_series(
    channels: Mapping[str, Sequence[np.ndarray]],
    filename: str = "",
    series_id: int = 1,
    count: int | None = None,
    compression: str | None = "bslz4",
) -> Iterator[list[bytes]]:
    """start, ``count`` image messages (every channel in each), end."""
    first = next(iter(channels.values()))
    count = len(first) if count is None else count
    y, x = first[0].shape
    common = {"series_id": series_id, "series_unique_id": UNIQUE_ID}
    yield [
        cbor_v2.encode(
            {
                "type": "start",
                **common,
                "channels": list(channels),
                "number_of_images": count,
                "image_size_x": x,
                "image_size_y": y,
                "detector_description": "Simulated DECTRIS stream v2",
                "user_data": {"filename": filename},
            }
        )
    ]
    planes = {
        name: [cbor_v2.multidim(f, compression) for f in frames]
        for name, frames in channels.items()
    }
    for i in range(count):
        data = {name: p[i % len(p)] for name, p in planes.items()}
        yield [
            cbor_v2.encode(
                {"type": "image", **common, "image_id": i, "real_time": [i, 1000], "data": data}
            )
        ]
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
        messages.append([bytes(p) for p in _PartsUnpickler(stream).load()])
    messages[0] = [_with_filename(messages[0][0], filename)]
    return messages


class _PartsUnpickler(pickle.Unpickler):
    """Lists of bytes and nothing else: a capture given on the command line (``replay``) must
    not be able to run code, which any other class in a pickle could."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a capture holds lists of bytes, not {module}.{name}")


def capture_v2_set(folder: Path, filename: str = "") -> list[list[bytes]]:
    """The messages of a folder of stream v2 messages, one ``*.cbor`` file each, in name order,
    ready to replay (DECTRIS' test sets).

    Such a set may lack its ``start`` message: one is made from the first image (its channel
    names, plane shape, ``series_id``) with ``filename`` in its ``user_data``, and an ``end`` is
    appended where the set has none. The messages the set holds are sent as they are.
    """
    raw = [path.read_bytes() for path in sorted(folder.glob("*.cbor"))]
    types = [cbor_v2.decode(m).get("type") for m in raw]
    if "image" not in types:
        raise ValueError(f"{folder}: no stream v2 image message in its *.cbor files")
    messages = [[m] for m in raw]
    first = cbor_v2.decode(raw[types.index("image")])
    if types[0] != "start":
        shape = cbor_v2.to_numpy(next(iter(first["data"].values()))).shape
        channels = {name: [np.zeros(shape, np.uint8)] for name in first["data"]}
        start = next(
            stream_v2_series(
                channels, filename, series_id=first["series_id"], count=types.count("image")
            )
        )
        messages.insert(0, start)
    else:
        messages[0] = [_with_filename(raw[0], filename)]
    if types[-1] != "end":
        messages.append(
            [
                cbor_v2.encode(
                    {
                        "type": "end",
                        "series_id": first["series_id"],
                        "series_unique_id": first.get("series_unique_id", ""),
                    }
                )
            ]
        )
    return messages


def _with_filename(start: bytes, filename: str) -> bytes:
    msg: dict[str, Any] = dict(cbor2.loads(start, tag_hook=lambda tag, immutable: tag))
    user = msg.get("user_data")
    user = json.loads(user) if isinstance(user, str) else dict(user or {})
    msg["user_data"] = json.dumps(user | {"filename": filename})  # a JSON string, as captured
    return cbor2.dumps(cbor2.CBORTag(55799, msg))


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return stream_v2_series({"threshold_1": frames}, filename, series_id=series, count=count)
