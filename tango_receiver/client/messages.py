"""The secondary port's messages as a consumer sees them, typed, with arrays decoded lazily.

Parsing never fails: a message that does not read as the internal format becomes
:class:`Unreadable` with the reason, so that a long-running consumer goes on. Only the JSON
header part is parsed on arrival; an image's pixels are decoded when ``array`` or ``arrays`` is
first asked for, so a consumer that counts, filters or skips frames pays nothing for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .decode import ChannelSpec, channel_specs, decode_images

Part = Any  # zmq.Frame (received with copy=False), bytes or memoryview


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message stands in its series, as far as this consumer saw it.

    ``missing``: message numbers skipped just before this one (dropped by the receiver for a
    consumer that did not keep up, or sent before it connected); ``late``: a number at or
    below one already seen in the series (a scale-out part forwards out of order);
    ``outside``: no header was seen for it (the consumer joined mid-series, or lost the header).
    """

    missing: int = 0
    late: bool = False
    outside: bool = False


@dataclass(slots=True)
class HeaderMessage:
    """Opens a series: the file it goes to (empty: not saved) and the detector's metadata."""

    msg_number: int | None
    head: dict[str, Any]
    metadata: dict[str, Any]
    position: Position = field(default_factory=Position)

    @property
    def filename(self) -> str:
        return str(self.head.get("filename") or "")

    @property
    def series_id(self) -> Any:
        return self.head.get("series_id")


@dataclass(slots=True)
class ImageMessage:
    """One frame: its header, its blobs as received, and its arrays decoded on first use."""

    msg_number: int | None
    head: dict[str, Any]
    blobs: list[Part]
    position: Position = field(default_factory=Position)
    _arrays: dict[str, np.ndarray] | None = None

    @property
    def frame(self) -> Any:
        return self.head.get("frame")

    @property
    def channels(self) -> list[ChannelSpec]:
        """What each blob holds (raises ValueError when the header does not say)."""
        return channel_specs(self.head)

    @property
    def nbytes(self) -> int:
        """Bytes received for its blobs."""
        return sum(memoryview(b).nbytes for b in self.blobs)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by channel name (``{"data": ...}`` for a single-array image)."""
        if self._arrays is None:
            self._arrays = decode_images(self.head, self.blobs)
        return self._arrays

    @property
    def array(self) -> np.ndarray:
        """The image's array; an image of several arrays says which it has (use ``arrays``)."""
        arrays = self.arrays
        if len(arrays) > 1:
            raise ValueError(
                f"image of {len(arrays)} arrays ({', '.join(arrays)}): use .arrays[name]"
            )
        return next(iter(arrays.values()))


@dataclass(slots=True)
class SeriesEndMessage:
    """Closes a series: every frame the receiver forwarded for it came before."""

    msg_number: int | None
    head: dict[str, Any]
    position: Position = field(default_factory=Position)


@dataclass(slots=True)
class Unreadable:
    """A message that is not the internal format; ``parts`` as received."""

    reason: str
    parts: list[Part]
    position: Position = field(default_factory=Position)
    msg_number: int | None = None


Message = HeaderMessage | ImageMessage | SeriesEndMessage | Unreadable


def parse(parts: Sequence[Part]) -> Message:
    """One received multipart message as a typed message (its position not yet known)."""
    if not parts:
        return Unreadable("no parts", [])
    try:
        head = json.loads(str(memoryview(parts[0]), "utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Unreadable(f"first part is not JSON: {exc}", list(parts))
    if not isinstance(head, dict):
        return Unreadable(f"first part is a JSON {type(head).__name__}, not an object", list(parts))
    number = head.get("msg_number")
    if number is not None and (type(number) is not int or number < 0):
        return Unreadable(f"msg_number {number!r:.40} is not a non-negative integer", list(parts))
    htype = head.get("htype")
    if htype == "image":
        return ImageMessage(number, head, list(parts[1:]))
    if htype == "header":
        return HeaderMessage(number, head, _metadata(parts))
    if htype == "series_end":
        return SeriesEndMessage(number, head)
    return Unreadable(f"unknown htype {htype!r:.40}", list(parts), msg_number=number)


def _metadata(parts: Sequence[Part]) -> dict[str, Any]:
    """The header's optional second part; anything but a JSON object counts as none."""
    if len(parts) < 2:
        return {}
    try:
        meta = json.loads(str(memoryview(parts[1]), "utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


class Tracker:
    """Positions from ``msg_number`` alone: a header opens a series at its number, each
    message should come one after the last, a series_end closes it. Pure, so its rules are
    tested without sockets."""

    def __init__(self) -> None:
        self.in_series = False
        self.last: int | None = None
        self.missing = 0  # all numbers skipped so far

    def place(self, message: Message) -> Position:
        number = message.msg_number
        if isinstance(message, HeaderMessage):
            self.in_series, self.last = True, number
            return Position()
        outside = not self.in_series
        if isinstance(message, SeriesEndMessage):
            self.in_series = False
        if number is None or self.last is None or outside:
            self.last = number if number is not None else self.last
            return Position(outside=outside)
        if number <= self.last:
            return Position(late=True)
        skipped, self.last = number - self.last - 1, number
        self.missing += skipped
        return Position(missing=skipped)
