"""Counters and rates of one receiver, published as one immutable snapshot.

The engine's threads write the counters; the Tango device, the REST sidecar and the CLI only read
``Stats.snapshot()``. That single source is why a Tango client and an HTTP client can never see
two different frame counts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final, Literal

from .errors import one_line

State = Literal["idle", "running", "error"]
IDLE: Final = "idle"
RUNNING: Final = "running"
ERROR: Final = "error"


@dataclass(frozen=True)
class SeriesCounters:
    """Per-series counters: reset when a new series starts, kept after it ends."""

    frames_received: int
    frames_written: int
    frames_forwarded: int
    forward_dropped: int  # a connected consumer could not take them
    forward_no_consumer: int  # nobody was connected to take them
    frames_missing: int
    frames_invalid: int
    frames_duplicate: int
    frames_outside: int
    frames_discarded: int
    roi_skipped: int  # stored but not ROI-counted: the counting fell behind (engine/roi.py)
    bytes_wire: int  # the image messages as they arrived (CBF, packed 12-bit, every module)
    bytes_stored: int  # the chunks written
    bytes_raw: int  # the pixels they hold, uncompressed


SERIES_COUNTERS = tuple(f.name for f in fields(SeriesCounters))


@dataclass(frozen=True)
class StatsSnapshot(SeriesCounters):
    state: State
    error: str
    filename: str
    series_id: str
    series_count: int
    series_complete: bool
    in_series: bool  # a series is open: header seen, series_end not yet
    alarm: bool  # frames lost this series (missing, invalid, discarded, dropped) not reset since
    last_frame_number: int
    series_duration_s: float  # header to series_end (or to now, while it runs)
    frame_rate: float
    data_rate: float
    compression_ratio: float
    queue_depth: int
    connected: bool
    detector_class: str
    upstream: tuple[str, ...]
    secondary_port: int
    rest_url: str  # where the REST sidecar serves this receiver ('' if none)
    consumers: int  # connected to the secondary port
    messages: tuple[str, ...]  # recent warnings and errors, newest last
    fatal: str  # a thread of the receiver died: it no longer works, only a restart helps

    @property
    def series_done(self) -> int:
        """Series ended so far: what a client waits on (a Sardana controller) to learn that a
        series is over without polling files."""
        return self.series_count - self.in_series

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


HISTORY = 256  # series summaries kept


@dataclass(frozen=True)
class SeriesSummary(SeriesCounters):
    """One finished series, as its counters stood when it ended."""

    number: int  # the receiver's series_count when it began: 1, 2, ...
    series_id: str
    filename: str
    complete: bool
    duration_s: float


@dataclass
class Stats:
    """Mutable counters of one receiver. Counter updates are single bytecode increments."""

    detector_class: str = ""
    upstream: tuple[str, ...] = ()
    secondary_port: int = 0
    rest_url: str = ""
    consumers: int = 0
    state: State = IDLE
    error: str = ""
    filename: str = ""
    series_id: str = ""
    series_count: int = 0
    series_complete: bool = True
    in_series: bool = False
    last_frame_number: int = -1
    series_started: float = 0.0
    series_ended: float = 0.0
    queue_depth: int = 0
    connected: bool = False
    rate_window_s: float = 1.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _samples: deque = field(default_factory=lambda: deque(maxlen=64), repr=False)
    _messages: deque = field(default_factory=lambda: deque(maxlen=20), repr=False)
    _history: deque = field(default_factory=lambda: deque(maxlen=HISTORY), repr=False)
    _acknowledged: tuple[int, ...] | None = field(default=None, repr=False)
    _error_series: int = field(default=0, repr=False)  # series_count when the error arose
    fatal: str = ""

    def __post_init__(self) -> None:
        for name in SERIES_COUNTERS:
            setattr(self, name, 0)

    def new_series(self, series_id: str, filename: str) -> None:
        with self._lock:
            for name in SERIES_COUNTERS:
                setattr(self, name, 0)
            self.series_id = series_id
            self.filename = filename
            self.series_count += 1
            self.series_complete = False
            self.in_series = True
            self._acknowledged = None
            self.last_frame_number = -1
            self.series_started = time.monotonic()
            self._samples.clear()
            if self.state != ERROR:
                self.state = RUNNING

    def end_series(self, complete: bool) -> None:
        with self._lock:
            self.series_complete = complete
            self.in_series = False
            self.series_ended = time.monotonic()
            self._history.append(
                SeriesSummary(
                    number=self.series_count,
                    series_id=self.series_id,
                    filename=self.filename,
                    complete=complete,
                    duration_s=self.series_ended - self.series_started,
                    **{name: getattr(self, name) for name in SERIES_COUNTERS},
                )
            )
            if self.state == RUNNING:
                self.state = IDLE
            elif (
                self.state == ERROR
                and complete
                and not self.fatal
                and self._error_series < self.series_count
            ):
                self.state, self.error = IDLE, ""  # a later series went through whole

    def resume(self, last: StatsSnapshot) -> None:
        """Take over the last series of the receiver this one replaces (the Tango device's
        Init), so that a restarted device still tells which file the last series went to and
        how it ended; losses not yet acknowledged by Reset still raise the alarm."""
        with self._lock:
            for name in SERIES_COUNTERS:
                setattr(self, name, getattr(last, name))
            self.filename, self.series_id = last.filename, last.series_id
            self.series_count, self.series_complete = last.series_count, last.series_complete
            self.last_frame_number = last.last_frame_number
            self._acknowledged = None if last.alarm else self._losses()

    def fail(self, text: str) -> None:
        """Enter the error state; the text is what an operator reads, so it names the cause
        on one line. A later series that completes whole leaves it (``messages`` keeps it)."""
        text = one_line(text)
        with self._lock:
            if not self.fatal:
                self.state, self.error = ERROR, text
                self._error_series = self.series_count
            self._messages.append(text)

    def die(self, text: str) -> None:
        """A thread of the receiver died: the error state for good (Reset cannot bring the
        thread back; the health check asks for a restart)."""
        self.fail(text)
        with self._lock:
            self.fatal = self.error = one_line(text)
            self.state = ERROR

    def history(self) -> tuple[SeriesSummary, ...]:
        """The last series, oldest first: what a client that polls too slowly still learns."""
        with self._lock:
            return tuple(self._history)

    def add(self, name: str, n: int = 1) -> None:
        """Count from a thread other than the engine's own (decoder workers)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def warn(self, text: str) -> None:
        text = one_line(text)
        with self._lock:
            self._messages.append(text)

    def reset(self, running: bool) -> None:
        """Clear the error and acknowledge the losses so far (a new loss raises the alarm again;
        the counters stay as they are)."""
        with self._lock:
            self._acknowledged = self._losses()
            if not self.fatal:
                self.error = ""
                self.state = RUNNING if running else IDLE
            self._messages.clear()

    def sample(self, now: float | None = None) -> None:
        """Record a point for the rates; called by the engine a few times a second."""
        self._samples.append(
            (time.monotonic() if now is None else now, self.frames_received, self.bytes_wire)
        )

    def _rates(self) -> tuple[float, float]:
        samples = list(self._samples)
        if len(samples) < 2:
            return 0.0, 0.0
        t1, f1, b1 = samples[-1]
        if time.monotonic() - t1 > 2 * self.rate_window_s:
            return 0.0, 0.0  # nothing new for a while: the rate is zero, not the last one seen
        older = [s for s in samples if t1 - s[0] >= self.rate_window_s]
        t0, f0, b0 = older[-1] if older else samples[0]
        dt = t1 - t0
        if dt <= 0:
            return 0.0, 0.0
        return (f1 - f0) / dt, (b1 - b0) / dt

    def _losses(self) -> tuple[int, ...]:
        return (
            self.frames_missing,
            self.frames_invalid,
            self.frames_discarded,
            self.forward_dropped,
        )

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            frame_rate, data_rate = self._rates()
            counters = {name: getattr(self, name) for name in SERIES_COUNTERS}
            ratio = (
                counters["bytes_raw"] / counters["bytes_stored"]
                if counters["bytes_stored"]
                else 0.0
            )
            return StatsSnapshot(
                state=self.state,
                error=self.error,
                filename=self.filename,
                series_id=self.series_id,
                series_count=self.series_count,
                series_complete=self.series_complete,
                in_series=self.in_series,
                alarm=any(self._losses()) and self._losses() != self._acknowledged,
                last_frame_number=self.last_frame_number,
                series_duration_s=(
                    (self.series_ended if not self.in_series else time.monotonic())
                    - self.series_started
                )
                if self.series_count
                else 0.0,
                frame_rate=frame_rate,
                data_rate=data_rate,
                compression_ratio=ratio,
                queue_depth=self.queue_depth,
                connected=self.connected,
                detector_class=self.detector_class,
                upstream=self.upstream,
                secondary_port=self.secondary_port,
                rest_url=self.rest_url,
                consumers=self.consumers,
                messages=tuple(self._messages),
                fatal=self.fatal,
                **counters,
            )
