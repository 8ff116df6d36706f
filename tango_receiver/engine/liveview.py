"""The latest frame for live view, decoded only when somebody asks.

The engine hands every image over by reference (no copy, no decompression); a viewer that asks
for pixels pays for one decode of that one frame. At thousands of frames per second that is the
difference between live view costing nothing and live view costing a core.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.bslz4 import decode_chunk
from ..codecs.downsample import block_mean
from ..messages import Channel, Image

log = logging.getLogger(__name__)

FRESH_WAIT_S = 0.03  # how long a viewer waits for the newest frame before taking the last one
# the share of a core that background decodes may take, however fast viewers poll: at 16M
# frames the receiver is bandwidth-bound and every share taken comes off its rate
# (Internals.md, "Live view"; benchmarks/LOG.md)
REFRESH_SHARE = 0.1


@dataclass(frozen=True)
class LiveFrame:
    """The latest image: its header fields and its undecoded planes."""

    msg_number: int
    frame: int
    series_id: str
    channels: tuple[Channel, ...]
    wire: tuple[Any, ...]  # the image in the internal format, as the secondary port sends it

    def parts(self) -> list[Any]:
        """The image as it came, in the form existing clients unpickle: the header as a dict
        (with ``series_id`` beside the sender's keys), then every blob as bytes, a compressed
        one with its 12-byte bitshuffle header."""
        head, *blobs = self.wire
        header = json.loads(memoryview(head).tobytes()) | {"series_id": self.series_id}
        return [header, *(memoryview(b).tobytes() for b in blobs)]

    def array(self, channel: int = 0, downsample: int = 1) -> np.ndarray:
        """The plane as numpy, block-mean binned by ``downsample`` (1 = full resolution)."""
        return binned(decode_plane(self.channels[channel]), downsample)

    def arrays(self, downsample: int = 1) -> tuple[np.ndarray, ...]:
        return tuple(self.array(i, downsample) for i in range(len(self.channels)))


DOWNSAMPLE_MIN, DOWNSAMPLE_MAX = 1, 64  # live-view binning a client may ask for


def binned(plane: np.ndarray, downsample: int) -> np.ndarray:
    factor = effective_downsample(plane.shape, downsample)
    return block_mean(plane, factor) if factor > 1 else plane


def effective_downsample(shape: tuple[int, ...], factor: int) -> int:
    """A factor coarser than a small frame bins it to one pixel rather than failing, since the
    setting is shared by every detector size the receiver sees; 1-D frames are not binned."""
    return min(factor, min(shape[-2:])) if len(shape) >= 2 else 1


def decode_plane(channel: Channel) -> np.ndarray:
    """Pixels of one stored plane, whatever compression the writer received."""
    dtype = np.dtype(channel.dtype)
    data = channel.stored
    if channel.stored_bslz4:
        return decode_chunk(data, channel.shape, dtype)
    return np.frombuffer(data, dtype=dtype).reshape(channel.shape)


class LiveView:
    """Holds the newest image; written by the engine thread, read by any viewer thread.

    ``view()`` decodes the newest frame in the background, once for every binning asked for
    since the last decode, and waits for it only while it would come within ``FRESH_WAIT_S``
    (the rest of the pause that keeps decodes to ``REFRESH_SHARE`` of a core, then a decode):
    a frame whose decode takes longer (a 16M frame) is answered at once from the last decode.
    The first frame of each series is decoded ahead (once, at ``downsample``), so that the first
    viewer of a series is answered at once too; beyond that, nothing is decoded while nobody
    looks.
    """

    def __init__(self) -> None:
        self._latest: tuple[Image, str] | None = None
        self._frame: LiveFrame | None = None
        self._views: dict[int, tuple[LiveFrame, tuple[np.ndarray, ...]]] = {}
        self._changed = threading.Condition()
        self._wanted = threading.Event()
        self._refresher: threading.Thread | None = None
        self._series: str | None = None
        self._in_flight: set[int] = set()  # binnings the background thread decodes now
        self._asked: set[int] = set()  # binnings wanted from the next background decode
        self._decode_s = 0.0  # how long the last background decode took
        self._idle_at = 0.0  # when the background thread's pause after it ends (monotonic)
        self.downsample = 1

    def update(self, image: Image, series_id: str) -> None:
        # A reference swap and a comparison: cheap enough for every frame on the hot path.
        self._latest = (image, series_id)
        if series_id != self._series:
            self._series = series_id
            self._refresh_soon(self.downsample)

    def latest(self) -> LiveFrame | None:
        """The newest frame, undecoded; the same object until a newer frame arrives."""
        latest = self._latest
        if latest is None:
            return None
        image, series_id = latest
        with self._changed:  # one object per frame, whichever thread asks first
            frame = self._frame
            if (
                frame is None
                or frame.msg_number != image.msg_number
                or frame.series_id != series_id
                or frame.channels[0] is not image.channels[0]
            ):
                frame = self._frame = LiveFrame(
                    image.msg_number,
                    image.frame,
                    series_id,
                    tuple(image.channels),
                    tuple(image.to_wire()),
                )
        return frame

    def view(self, downsample: int = 1) -> tuple[LiveFrame, tuple[np.ndarray, ...]] | None:
        """A recent frame's planes: the newest already decoded, or the newest if none is;
        None when there is no frame, or while the first one is still being decoded ahead."""
        frame = self.latest()
        if frame is None:
            return None
        with self._changed:
            if downsample not in self._views and (
                downsample in self._asked or downsample in self._in_flight
            ):
                # nothing at this binning yet, but a decode of it is on its way (the first
                # frame of a series, decoded ahead): not decoded twice
                if not self._changed.wait_for(lambda: downsample in self._views, FRESH_WAIT_S):
                    return None  # the series' first frame, not decoded yet: nothing to show
            cached = self._views.get(downsample)
            if cached is not None and cached[0] is not frame:
                self._refresh_soon(downsample)
                # a frame whose decode, after what is left of the pause, fits in the wait is
                # answered exactly; a slower one at once with the last decoded frame
                pause_left = max(0.0, self._idle_at - time.monotonic())
                if pause_left + self._decode_s <= FRESH_WAIT_S:
                    self._changed.wait_for(
                        lambda: self._views[downsample][0] is frame, FRESH_WAIT_S
                    )
                return self._views[downsample]
        if cached is not None:
            return cached
        try:
            result = (frame, frame.arrays(downsample))
        except ValueError:
            return None  # the only frame there is cannot be shown (and is counted invalid)
        with self._changed:
            self._views[downsample] = result
        return result

    def _refresh_soon(self, downsample: int) -> None:
        with self._changed:
            self._asked.add(downsample)
        self._wanted.set()
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh, name="liveview-refresh", daemon=True
            )
            self._refresher.start()

    def _decode(self, frame: LiveFrame, binnings: list[int]) -> None:
        """One decode of the frame, binned as each viewer asked."""
        planes = [decode_plane(c) for c in frame.channels]
        for downsample in binnings:
            result = (frame, tuple(binned(p, downsample) for p in planes))
            with self._changed:
                self._views[downsample] = result
                self._changed.notify_all()

    def _refresh(self) -> None:
        while self._wanted.wait():
            self._wanted.clear()
            started = time.monotonic()
            frame = self.latest()
            if frame is None:  # asked before any frame came
                continue
            with self._changed:
                stale = [
                    k for k in self._asked if k not in self._views or self._views[k][0] is not frame
                ]
                self._asked.clear()
                if not stale:  # nothing to do: nor does it say how long a decode takes
                    continue
                self._in_flight = set(stale)
            try:
                self._decode(frame, stale)
            except ValueError:
                pass  # a frame that cannot be shown: keep showing the last good one
            except Exception:  # live view must outlive a bug: the next frame is tried again
                log.exception(
                    "live view: decoding frame %d of series %s failed", frame.frame, frame.series_id
                )
            finally:
                with self._changed:
                    self._in_flight = set()
                    self._decode_s = time.monotonic() - started
                    pause = self._decode_s * (1 / REFRESH_SHARE - 1)
                    self._idle_at = time.monotonic() + pause
                    self._changed.notify_all()
            time.sleep(pause)
