"""The fast lane: a running series' frames taken in runs by compiled code (_v1lane.c), for
stream v1 and for the internal format.

At small frames most of the Python path's time is pyzmq's objects, JSON and h5py's call
overhead, the same work again for every frame of a series. The lane does that in C: it
receives, reads the small JSON parts, checks the chunk against the form Python found sound, and
hands the engine one ``FrameRun`` for many frames; the engine writes a run with one call. What
the lane does not take (headers, ends, the first frame of a form, anything odd) comes back as
received and goes through the Python decoder, which stays the one place that knows the format
and words its errors. Internals.md ("The fast lane") says what is checked
where.

``AVAILABLE`` is False where the extension was not built (``setup.py`` builds it optionally):
the receiver then runs the Python path for every frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .messages import Buffer, FrameRun
from .native import AVAILABLE, v1lane
from .transport import Source

__all__ = ["AVAILABLE", "Candidate", "LaneForm", "LaneSource", "Wire"]

#: what a lane candidate is: the (shape as the message gives it, type, encoding or compression,
#: chunk header) of an image message
Candidate = tuple[tuple[int, ...], str, str, bytes]
#: the wire forms the lane reads: stream v1, or the internal format
Wire = Literal["v1", "internal"]


@dataclass(frozen=True)
class LaneForm:
    """A form Python decoded once and found sound: what the lane's runs carry."""

    shape: tuple[int, ...]
    dtype: str
    n_blocks: int  # blocks in the chunk's table, for its header
    tail: int  # raw bytes after the blocks


class LaneSource:
    """Receives through the lane from a plain Source's socket (same interface as a Source)."""

    def __init__(
        self,
        source: Source,
        wire: Wire,
        form_of: Callable[[Candidate], LaneForm | None],
        max_messages: int,
        max_bytes: int,
    ) -> None:
        self._source = source
        self._address = source.socket.underlying  # the libzmq socket the lane reads
        assert v1lane is not None  # a LaneSource is made only where the lane is AVAILABLE
        self._lane = v1lane.Lane(internal=wire == "internal")
        self._form_of = form_of
        self._limits = (max_messages, max_bytes)
        self._candidate: Candidate | None = None  # the last one looked at, sound or not
        self._form: LaneForm | None = None

    def receive(self, timeout_ms: int) -> list[list[Buffer] | FrameRun]:
        """The messages waiting now, after up to ``timeout_ms`` for the first: runs of frames of
        the lane's form, and every other message as its parts."""
        form = self._form  # the lane classified the whole batch with this one
        out: list[list[Buffer] | FrameRun] = []
        for item in self._lane.receive(self._address, timeout_ms, *self._limits):
            if len(item) == 6:
                first, offset, stride, chunks, wires, heads = item
                assert form is not None  # the lane makes runs only of a form it was taught
                out.append(
                    FrameRun(first, chunks, wires, form.shape, form.dtype, offset, heads, stride)
                )
                continue
            parts, candidate = item
            if candidate is not None and candidate != self._candidate:
                self._learn(candidate)
            out.append(parts)
        return out

    def _learn(self, candidate: Candidate) -> None:
        """A new form: the lane takes it from the next batch on when Python finds it sound."""
        self._candidate = candidate
        form = self._form_of(candidate)
        if form is not None:
            self._lane.set_form(*candidate, form.n_blocks, form.tail)
            self._form = form

    def close(self) -> None:
        self._source.close()
