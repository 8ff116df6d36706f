"""The internal messages and their wire form on the secondary port.

Every detector decoder turns its own protocol into these three messages; everything downstream
(ordering, writer, forwarder, live view) sees nothing else. The wire form is the project's
internal JSON format: a JSON header part, then one binary part per image channel.

Blobs are carried as the buffer the socket handed over (a ``zmq.Frame``) whenever the detector
already sends what is written, so a frame crosses the receiver without a copy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .wire_fields import check_header

Buffer = Any  # bytes, memoryview, numpy array or zmq.Frame: anything with the buffer protocol
Parts = list[Buffer]  # the frames of one multipart ZMQ message (zmq.Frame with copy=False)


class InvalidMessage(ValueError):
    """A message that cannot be taken; counted as invalid, the receiver goes on."""

    msg_number: int | None = None  # its place in the stream, when the decoder got that far


@dataclass(slots=True)
class Header:
    msg_number: int
    filename: str = ""
    save_raw: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    series_id: int | str | None = None
    nimages: int | None = None  # announced by the detector: where a stream's end falls
    #: why the decoder found no filename where the detector gives one (said when the series opens)
    no_file_reason: str = ""
    #: detector-group name -> path under ``metadata/`` for fields the system this replaces wrote
    #: under another name than the detector's (stream v2 ``threshold_energy/threshold_1``)
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Every decoder builds its header here, so no unchecked field reaches the engine."""
        try:
            check_header(
                msg_number=self.msg_number,
                filename=self.filename,
                save_raw=self.save_raw,
                series_id=self.series_id,
                nimages=self.nimages,
            )
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None

    @property
    def saves(self) -> bool:
        return bool(self.filename) and self.save_raw

    def to_wire(self) -> list[bytes]:
        head: dict[str, Any] = {
            "htype": "header",
            "msg_number": self.msg_number,
            "filename": self.filename,
        }
        if not self.save_raw:
            head["save_raw"] = False
        if self.series_id is not None:
            head["series_id"] = self.series_id
        parts = [json.dumps(head).encode()]
        meta = _jsonable(self.metadata)
        if meta:
            parts.append(json.dumps(meta).encode())
        return parts


@dataclass(slots=True)
class Channel:
    """One image plane. ``blob`` is forwarded; ``chunk`` is what the writer stores.

    For data that arrives bitshuffle-LZ4 both are the same buffer. For data compressed on the way
    the forwarder still sends the original, uncompressed ``blob``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    compression: str
    blob: Buffer
    chunk: Buffer | None = None  # bslz4 chunk with its 12-byte header, or raw bytes
    pixels: np.ndarray | None = None  # pixels decoded here, kept only for ROI counting

    @property
    def stored(self) -> Buffer:
        return self.blob if self.chunk is None else self.chunk

    @property
    def stored_bslz4(self) -> bool:
        """Whether ``stored`` is a bitshuffle-LZ4 chunk (else raw pixels)."""
        return self.chunk is not None or self.compression == "bslz4"


@dataclass(slots=True)
class Image:
    msg_number: int
    frame: int
    channels: list[Channel]
    wire: list[Buffer] | None = None  # the parts as received, when they are already this format
    nbytes_wire: int = 0  # every byte of the message(s) it came in: set by the receiver
    #: the sender's ``"discard": true``: received, forwarded and shown, never written (frames a
    #: detector sends before or after the ones the scan wants)
    discard: bool = False
    #: reads what the frame says about the series (a Pilatus CBF mini-header); the writer calls
    #: it for the series' first frame only, and keeps that with the header's metadata
    describe: Callable[[], dict[str, Any]] | None = None
    #: (start, stop, real) time of the exposure in seconds, where the detector sends them
    times: tuple[float, float, float] | None = None

    @property
    def nbytes_stored(self) -> int:
        return sum(memoryview(c.stored).nbytes for c in self.channels)

    @property
    def nbytes_held(self) -> int:
        """Memory this image keeps alive: its blobs, and the chunks made from them."""
        return sum(
            memoryview(c.blob).nbytes
            + (0 if c.chunk is None else memoryview(c.chunk).nbytes)
            + (0 if c.pixels is None else c.pixels.nbytes)
            for c in self.channels
        )

    @property
    def nbytes_raw(self) -> int:
        return sum(_nbytes(c.shape, c.dtype) for c in self.channels)

    def to_wire(self) -> list[Buffer]:
        if self.wire is not None:
            return self.wire
        first = self.channels[0]
        head: dict[str, Any] = {
            "htype": "image",
            "msg_number": self.msg_number,
            "frame": self.frame,
            "shape": list(first.shape),
            "type": first.dtype,
            "compression": first.compression,
        }
        if len(self.channels) > 1 or first.name != "data":
            head["channels"] = [
                {
                    "name": c.name,
                    "shape": list(c.shape),
                    "type": c.dtype,
                    "compression": c.compression,
                }
                for c in self.channels
            ]
        return [json.dumps(head).encode(), *(c.blob for c in self.channels)]


@dataclass(slots=True)
class SeriesEnd:
    msg_number: int | None  # None: the detector does not say; ordering places it after the last

    def to_wire(self) -> list[bytes]:
        return [json.dumps({"htype": "series_end", "msg_number": self.msg_number}).encode()]


@dataclass(slots=True)
class FrameRun:
    """Frames ``first``, ``first + stride``, ... of one form, one bitshuffle-LZ4 channel "data"
    each, numbered ``first + offset``, ... in the stream, as the compiled lane took them
    (lane.py), or as the ordering let them go together (``runs_of``): the engine handles a run
    of consecutive frames as one item when it continues the series exactly, and as its images
    otherwise (a worker of several gets every n-th frame: stride n)."""

    first: int
    chunks: list[Buffer]
    wires: list[int]  # bytes each frame arrived in
    shape: tuple[int, ...]
    dtype: str
    offset: int = 1  # msg_number - frame (stream v1 numbers frame + 1)
    heads: list[Buffer] | None = None  # internal format: each frame's head part, as it came
    stride: int = 1
    ordered: bool = False  # its frames have passed the ordering already (``runs_of``)

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def msg_number(self) -> int:
        return self.first + self.offset

    @property
    def nbytes_wire(self) -> int:
        return sum(self.wires)

    @property
    def nbytes_stored(self) -> int:
        return sum(map(len, self.chunks))  # a chunk's len is its size in bytes

    @property
    def nbytes_held(self) -> int:
        return self.nbytes_stored

    @property
    def nbytes_raw(self) -> int:
        return len(self.chunks) * _nbytes(self.shape, self.dtype)

    def image(self, index: int) -> Image:
        frame, chunk = self.first + index * self.stride, self.chunks[index]
        number = frame + self.offset
        head = (
            self.heads[index]
            if self.heads is not None
            else (_head_form(self.shape, self.dtype) % (number, frame)).encode()
        )
        return Image(
            msg_number=number,
            frame=frame,
            channels=[Channel("data", self.shape, self.dtype, "bslz4", chunk)],
            wire=[head, chunk],
            nbytes_wire=self.wires[index],
        )

    def images(self) -> list[Image]:
        return [self.image(i) for i in range(len(self.chunks))]


Message = Header | Image | SeriesEnd


def runs_of(messages: list[Message]) -> list[Message | FrameRun]:
    """``messages`` with each stretch of two or more consecutive frames of one form (numbers and
    frames rising by one, one bitshuffle-LZ4 channel "data" stored as it came) made into one
    ordered ``FrameRun``: what the ordering lets go at once (runs of several workers put
    together, a gap given up) is then written with one call, as the lane's own runs are."""
    out: list[Message | FrameRun] = []
    group: list[Image] = []
    for message in [*messages, None]:
        if isinstance(message, Image) and group and _continues(group[-1], message):
            group.append(message)
            continue
        if len(group) > 1:
            out.append(_run(group))
        else:
            out.extend(group)
        group = [message] if isinstance(message, Image) and _runnable(message) else []
        if message is not None and not group:
            out.append(message)
    return out


def _runnable(image: Image) -> bool:
    """An image a run can carry: its chunk is all there is to it. One that also says something a
    run has no room for (discard, what it tells of the series, its times, pixels kept for ROI
    counting) stays an image."""
    if (
        len(image.channels) != 1
        or (image.wire is not None and len(image.wire) != 2)
        or image.discard
        or image.describe is not None
        or image.times is not None
    ):
        return False
    channel = image.channels[0]
    return (
        channel.name == "data"
        and channel.compression == "bslz4"
        and channel.chunk is None
        and channel.pixels is None
    )


def _continues(last: Image, image: Image) -> bool:
    a, b = last.channels[0], image.channels[0] if image.channels else None
    return (
        _runnable(image)
        and image.msg_number == last.msg_number + 1
        and image.frame == last.frame + 1
        and (image.wire is None) == (last.wire is None)
        and b is not None
        and (a.shape, a.dtype) == (b.shape, b.dtype)
    )


def _run(images: list[Image]) -> FrameRun:
    first, channel = images[0], images[0].channels[0]
    heads = None if first.wire is None else [image.wire[0] for image in images if image.wire]
    return FrameRun(
        first.frame,
        [image.channels[0].blob for image in images],
        [image.nbytes_wire for image in images],
        channel.shape,
        channel.dtype,
        first.msg_number - first.frame,
        heads,
        ordered=True,
    )


@lru_cache(maxsize=64)
def _head_form(shape: tuple[int, ...], dtype: str) -> str:
    """The JSON head ``Image.to_wire`` writes for a bslz4 frame of this form, its msg_number and
    frame left as ``%d``: a run's frames are forwarded with a string format each, a tenth of
    what a ``json.dumps`` costs."""
    head = json.dumps(
        {
            "htype": "image",
            "msg_number": 0,
            "frame": 0,
            "shape": list(shape),
            "type": dtype,
            "compression": "bslz4",
        }
    ).replace("%", "%%")
    return head.replace('"msg_number": 0, "frame": 0', '"msg_number": %d, "frame": %d')


@lru_cache(maxsize=64)
def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    n = np.dtype(dtype).itemsize
    for s in shape:
        n *= s
    return n


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata that survives JSON; arrays (flatfield, masks) stay in the file only."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            out[key] = _jsonable(value)
        elif isinstance(value, (str, int, float, bool, list)) or value is None:
            out[key] = value
    return out
