"""The latest frame for live view, decoded only when somebody asks.

The engine hands every image over by reference (no copy, no decompression); a viewer that asks
for pixels pays for one decode of that one frame. At thousands of frames per second that is the
difference between live view costing nothing and live view costing a core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codecs.bslz4 import decode_chunk
from ..codecs.downsample import block_mean
from ..messages import Channel, Image


@dataclass(frozen=True)
class LiveFrame:
    """The latest image: its header fields and its undecoded planes."""

    msg_number: int
    frame: int
    series_id: str
    channels: tuple[Channel, ...]

    @property
    def header(self) -> dict:
        first = self.channels[0]
        return {"htype": "image", "msg_number": self.msg_number, "frame": self.frame,
                "series_id": self.series_id, "shape": list(first.shape), "type": first.dtype,
                "compression": first.compression,
                "channels": [c.name for c in self.channels]}

    def array(self, channel: int = 0, downsample: int = 1) -> np.ndarray:
        """The plane as numpy, block-mean binned by ``downsample`` (1 = full resolution)."""
        plane = decode_plane(self.channels[channel])
        return block_mean(plane, downsample) if downsample > 1 else plane


def decode_plane(channel: Channel) -> np.ndarray:
    """Pixels of one stored plane, whatever compression the writer received."""
    dtype = np.dtype(channel.dtype)
    data = channel.stored
    if channel.chunk is not None or channel.compression == "bslz4":
        return decode_chunk(data, channel.shape, dtype)
    return np.frombuffer(data, dtype=dtype).reshape(channel.shape)


class LiveView:
    """Holds the newest image; written by the engine thread, read by any viewer thread."""

    def __init__(self) -> None:
        self._latest: LiveFrame | None = None
        self.downsample = 1

    def update(self, image: Image, series_id: str) -> None:
        # A plain reference swap: cheap enough for every frame on the hot path.
        self._latest = LiveFrame(image.msg_number, image.frame, series_id, tuple(image.channels))

    def latest(self) -> LiveFrame | None:
        return self._latest
