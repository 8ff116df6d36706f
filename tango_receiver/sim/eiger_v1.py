"""DECTRIS stream v1 (SIMPLON 1.8) as an EIGER sends it, and replay of a real capture."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from ..codecs.bslz4 import encode_chunk
from ..codecs.dectris import V1_HEADER_PARTS

ENCODINGS = {"uint32": "bs32-lz4<", "uint16": "bs16-lz4<", "uint8": "bs8-lz4<"}


def _j(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def eiger_v1_series(
    frames: Sequence[np.ndarray],
    filename: str = "",
    series: int = 1,
    header_detail: str = "basic",
    count: int | None = None,
    appendix: dict[str, Any] | None = None,
) -> Iterator[list[bytes]]:
    """dheader-1.0, ``count`` dimage-1.0 messages cycling through ``frames``, dseries_end-1.0."""
    count = len(frames) if count is None else count
    y, x = frames[0].shape
    dtype = frames[0].dtype.name
    header = [_j({"htype": "dheader-1.0", "header_detail": header_detail, "series": series})]
    if header_detail in ("basic", "all"):
        header.append(
            _j(
                {
                    "nimages": count,
                    "ntrigger": 1,
                    "x_pixels_in_detector": x,
                    "y_pixels_in_detector": y,
                    "bit_depth_image": frames[0].itemsize * 8,
                    "description": "Simulated EIGER",
                    "count_time": 0.001,
                }
            )
        )
    if header_detail == "all":
        for htype, arr in (
            ("dflatfield-1.0", np.ones((y, x), np.float32)),
            ("dpixelmask-1.0", np.zeros((y, x), np.uint32)),
            ("dcountrate_table-1.0", np.zeros((4, 2), np.float32)),
        ):
            header += [
                _j({"htype": htype, "shape": [arr.shape[1], arr.shape[0]], "type": arr.dtype.name}),
                arr.tobytes(),
            ]
    appendix = {"filename": filename} if appendix is None else appendix
    if appendix:
        header.append(_j(appendix))
    yield header
    blobs = [encode_chunk(f) for f in frames]
    for i in range(count):
        blob = blobs[i % len(blobs)]
        yield [
            _j(
                {
                    "htype": "dimage-1.0",
                    "series": series,
                    "frame": i,
                    "hash": hashlib.md5(blob).hexdigest(),
                }
            ),
            _j(
                {
                    "htype": "dimage_d-1.0",
                    "shape": [x, y],
                    "type": dtype,
                    "encoding": ENCODINGS[dtype],
                    "size": len(blob),
                }
            ),
            blob,
            _j(
                {
                    "htype": "dconfig-1.0",
                    "start_time": i * 1000,
                    "stop_time": i * 1000 + 900,
                    "real_time": 900,
                }
            ),
        ]
    yield [_j({"htype": "dseries_end-1.0", "series": series})]


def capture_v1(path: Path, filename: str = "") -> list[list[bytes]]:
    """The messages of a real stream v1 capture (CBOR items of ZMQ parts), ready to replay.

    The capture carries no dseries_end, so one is appended; ``filename`` goes into the header
    appendix as a beamline control system would put it.
    """
    with zipfile.ZipFile(path) as zf:
        raw = zf.read(zf.namelist()[0])
    decoder = cbor2.CBORDecoder(io.BytesIO(raw))
    messages: list[list[bytes]] = []
    while decoder.fp.tell() < len(raw):
        _, payload = decoder.decode().value
        messages.append([bytes(p) for p in payload["eigerxes"].value[1]])
    header = messages[0]
    head = json.loads(header[0])
    fixed = V1_HEADER_PARTS[head.get("header_detail", "none")]
    appendix = json.loads(header[fixed]) if len(header) > fixed else {}
    messages[0] = header[:fixed] + [_j(appendix | {"filename": filename})]
    messages.append([_j({"htype": "dseries_end-1.0", "series": head.get("series", 0)})])
    return messages


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return eiger_v1_series(frames, filename, series=series, count=count)
