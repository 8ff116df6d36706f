"""``tango-receiver consume ENDPOINT``: what a receiver forwards, one line per message.

At high rates a line per frame would cost more than the frame and scroll past unread, so
after ``LINES_PER_S`` image lines in a second the rest of that second's images are summed up
in a progress line instead. Headers, series ends, gaps and errors always get their own line.
"""

from __future__ import annotations

import itertools
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .consumer import Consumer
from .messages import HeaderMessage, ImageMessage, Message, Position, SeriesEndMessage
from .save import SeriesStore

log = logging.getLogger(__name__)

LINES_PER_S = 20
PROGRESS_S = 1.0


def describe(message: Message) -> str:
    """One line for a message: what it is, its number, and what its header says."""
    if isinstance(message, HeaderMessage):
        text = (
            f"header {message.msg_number} series {message.series_id} file {message.filename or '-'}"
        )
    elif isinstance(message, ImageMessage):
        text = f"image {message.msg_number} frame {message.frame} {_arrays(message)}"
    elif isinstance(message, SeriesEndMessage):
        text = f"series_end {message.msg_number}"
    else:
        text = f"unreadable message: {message.reason}"
    return text + _position(message.position)


class Report:
    """Prints lines for a stream of messages, switching to progress lines at high rates."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.clock = clock
        self.window = clock()
        self.lines = 0  # image lines printed in this window
        self.quiet_images = self.quiet_bytes = 0  # images summed up instead, this window
        self.images = self.series_images = 0

    def message(self, message: Message) -> None:
        now = self.clock()
        if now - self.window >= PROGRESS_S:
            self.progress(now)
        image = isinstance(message, ImageMessage)
        if image:
            self.images += 1
            self.series_images += 1
        if not image or message.position != Position() or self.lines < LINES_PER_S:
            self.print(describe(message))
            self.lines += int(image)
        else:
            self.quiet_images += 1
            self.quiet_bytes += message.nbytes if isinstance(message, ImageMessage) else 0
        if isinstance(message, SeriesEndMessage):
            self.print(f"  series ended: {self.series_images} images received")
        if isinstance(message, (HeaderMessage, SeriesEndMessage)):
            self.series_images = 0

    def progress(self, now: float) -> None:
        """The images not printed since the last window, with their rate; then a new window."""
        if self.quiet_images:
            span = now - self.window
            self.print(
                f"... {self.quiet_images} more images in {span:.1f} s "
                f"({self.quiet_images / span:.0f}/s, {self.quiet_bytes / span / 1e6:.1f} "
                f"MB/s), {self.images} in all"
            )
        self.window, self.lines, self.quiet_images, self.quiet_bytes = now, 0, 0, 0

    def print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def consume(
    endpoint: str,
    save: Path | None = None,
    count: int | None = None,
    timeout_s: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print (and with ``save``, store) up to ``count`` messages; stop after ``timeout_s``
    without one (None: never). Exit status 0, or 1 when an image could not be stored."""
    store = SeriesStore(save) if save is not None else None
    report = Report(out)
    failed = 0
    with Consumer(endpoint, timeout_s=timeout_s) as stream:
        report.print(f"consuming {stream.endpoint}" + (f", saving to {save}" if save else ""))
        try:
            for message in itertools.islice(stream, count):
                with _STOP.held():  # said once stored: a line printed is an image saved
                    refused = None
                    if store is not None:
                        try:
                            store.take(message)
                        except ValueError as exc:
                            failed += 1
                            refused = exc
                    report.message(message)
                    if refused is not None:
                        report.print(f"  image {message.msg_number} not saved: {refused}")
        except KeyboardInterrupt:
            pass
        finally:
            report.progress(report.clock())
            if store is not None:
                store.close()
        report.print(
            f"{stream.received} messages, {report.images} images, {stream.missing} missing"
        )
    return 1 if failed else 0


def run(endpoint: str, save: Path | None, count: int | None, timeout_s: float | None) -> int:
    """The command: SIGTERM stops it as Ctrl-C does, so that saved files are closed whole;
    an endpoint ZeroMQ cannot connect to is exit status 2."""
    signal.signal(signal.SIGTERM, _STOP.handle)
    signal.signal(signal.SIGINT, _STOP.handle)
    try:
        return consume(endpoint, save, count, timeout_s)
    except ValueError as exc:  # only the connect raises it: images are reported, not raised
        log.error("%s", exc)
        return 2


class _Stop:
    """Ctrl-C and SIGTERM stop the command between two messages, never inside one: a stop
    that comes while a message is stored and reported waits for that to end. Raised anywhere,
    it could leave the file a row resized but not written, or a line said of an image that
    the file never got (a SIGTERM sent on seeing ``image 2`` lost image 2)."""

    def __init__(self) -> None:
        self._holding = False
        self._pending = False

    def handle(self, signum: int, frame: object) -> None:
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


_STOP = _Stop()


def _arrays(message: ImageMessage) -> str:
    try:
        specs = message.channels
    except ValueError as exc:
        return f"(header unreadable: {exc})"
    named = len(specs) > 1 or specs[0].name != "data"
    return (
        ", ".join(
            f"{spec.name + ' ' if named else ''}{'x'.join(map(str, spec.shape))} "
            f"{spec.dtype.name} {spec.compression}"
            for spec in specs
        )
        + f" ({message.nbytes} bytes)"
    )


def _position(position: Position) -> str:
    notes = []
    if position.missing:
        notes.append(f"{position.missing} missing before")
    if position.late:
        notes.append("out of order")
    if position.outside:
        notes.append("outside a series (its header was not received)")
    return f" [{'; '.join(notes)}]" if notes else ""
