"""ROI counting beside the write path: per frame and ROI, sum, max and pixels above zero.

The engine thread hands each image of a series to a small pool of counting threads through a
queue bounded in bytes and in counting time, and never waits for them (but once, for what is
queued when the file closes): an image that does not fit is counted as ``roi_skipped`` (and
said once per series), and the file still gets it. The threads run at low priority and within
the entry's ``roi_cpu`` cores, so on busy cores counting gives way to writing. The pool counts from
what the image already holds: pixels a worker decoded (kept on the channel while ROIs are
defined, ``Detector.keep_pixels``), raw pixels as they came, or a bitshuffle-LZ4 chunk, of which
only the blocks under each ROI are decompressed (``codecs/bslz4_span.py``). bitshuffle and
numpy release the GIL, so the counting runs beside the engine.

ROIs apply per series: a table set during a series is taken at the next header. The image
counted is the channel named "data", else the first (a stream v2 series' first threshold).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.bslz4_span import decode_span
from ..messages import Channel, FrameRun, Image
from ..rois import Roi, frame_plane, misplaced, parse_table, regions
from .roi_file import existing_rows, write_rows
from .stats import Stats
from .writer import SeriesWriter

log = logging.getLogger(__name__)

#: frames waiting to be counted; beyond any bound they are skipped. What is queued when a
#: file closes is waited for, so the queue holds at most BACKLOG_S of counting (CPU time, as
#: measured lately) per thread
QUEUE_BYTES = 64 << 20
QUEUE_ITEMS = 256
BACKLOG_S = 0.01
#: counting CPU seconds per byte of what a frame is counted from, until measured: a sparse
#: 4M bslz4 chunk with four ROIs of a few hundred rows (~5 ms for 560 kB)
FIRST_COST_PER_BYTE = 1e-8
#: the counting threads' nice value: on busy cores the scheduler prefers the write path
NICE = 19
FINAL_WAIT_S = 2.0  # at a series' end, how long the counts still queued may take
GROW = 1024
SUM, MAX, COUNT = range(3)  # the values of one ROI, in this order everywhere


@dataclass(frozen=True)
class Plane:
    """What one frame is counted from: decoded pixels, or a bitshuffle-LZ4 chunk."""

    shape: tuple[int, ...]
    dtype: np.dtype
    pixels: np.ndarray | None
    chunk: Any = None

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes if self.pixels is not None else memoryview(self.chunk).nbytes


def plane_of(image: Image) -> Plane:
    channel = next((c for c in image.channels if c.name == "data"), image.channels[0])
    return _plane(channel)


def _plane(channel: Channel) -> Plane:
    dtype = np.dtype(channel.dtype)
    if channel.pixels is not None:
        return Plane(channel.shape, dtype, channel.pixels)
    if channel.compression == "none":  # raw as it came (the chunk, if any, is made from it)
        return Plane(channel.shape, dtype, np.frombuffer(channel.blob, dtype))
    return Plane(channel.shape, dtype, None, channel.blob)


def count(rois: tuple[Roi, ...], plane: Plane) -> np.ndarray:
    """(len(rois), 3) values: sum, max, pixels above zero; an empty region gives zeros."""
    rows, cols = frame_plane(plane.shape)
    out = np.zeros((len(rois), 3))
    for i, roi in enumerate(rois):
        roi = roi.clipped(rows, cols)
        if roi.empty:
            continue
        (r0, r1), (c0, c1) = roi.rows, roi.cols
        if plane.pixels is not None:
            region = plane.pixels.reshape(rows, cols)[r0:r1, c0:c1]
        else:
            elements, first = decode_span(
                plane.chunk, plane.shape, plane.dtype, r0 * cols, r1 * cols
            )
            start = r0 * cols - first
            region = elements[start : start + (r1 - r0) * cols].reshape(r1 - r0, cols)[:, c0:c1]
        kind = plane.dtype.kind
        out[i, SUM] = region.sum(dtype=np.float64 if kind == "f" else np.int64)
        out[i, MAX] = region.max()
        out[i, COUNT] = np.count_nonzero(region if kind == "u" else region > 0)
    return out


class RoiSeries:
    """One series' ROI values, row ``i`` for the series' ``i``-th image: written by the
    counting threads in any order, read by the engine (file), Tango and REST."""

    def __init__(self, table: dict[str, Any], number: int) -> None:
        self.table = table
        self.rois = regions(table)
        self.names = tuple(table)
        self.number = number  # the receiver's series_count when the series began
        self.submitted = 0  # rows handed out (counted, queued or skipped)
        self.counted = 0
        self.skipped = 0
        self.saved = 0  # rows in the file (engine thread only)
        self.shape_checked = False
        self.file_base: int | None = None  # rows of the file's ROI groups before this series
        self.last_save = 0.0
        self._lock = threading.Condition()
        self._values = np.full((GROW, len(self.rois), 3), np.nan)
        self._frames = np.full(GROW, -1, np.int64)
        self._done = np.zeros(GROW, bool)
        self._resolved = 0  # rows from the first that are counted or skipped
        self._latest = -1

    def reserve(self, frames: list[int]) -> int:
        """Rows for these frames (engine thread); the index of the first."""
        with self._lock:
            first, self.submitted = self.submitted, self.submitted + len(frames)
            if self.submitted > len(self._frames):
                grow = max(self.submitted, 2 * len(self._frames)) - len(self._frames)
                self._values = np.concatenate(
                    [self._values, np.full((grow, *self._values.shape[1:]), np.nan)]
                )
                self._frames = np.concatenate([self._frames, np.full(grow, -1, np.int64)])
                self._done = np.concatenate([self._done, np.zeros(grow, bool)])
            self._frames[first : self.submitted] = frames
            return first

    def record(self, row: int, values: np.ndarray | None) -> None:
        """A row counted, or skipped (``None``: its values stay NaN)."""
        with self._lock:
            if values is None:
                self.skipped += 1
            else:
                self._values[row] = values
                self.counted += 1
                self._latest = max(self._latest, row)
            self._done[row] = True
            while self._resolved < self.submitted and self._done[self._resolved]:
                self._resolved += 1
            self._lock.notify_all()

    def wait(self, timeout: float) -> bool:
        """Until every row handed out is counted or skipped; False when time ran out."""
        with self._lock:
            return self._lock.wait_for(
                lambda: self.counted + self.skipped >= self.submitted, timeout
            )

    def latest(self) -> tuple[int, np.ndarray]:
        """(frame, values) of the newest row counted; (-1, NaNs) before one."""
        with self._lock:
            if self._latest < 0:
                return -1, np.full((len(self.rois), 3), np.nan)
            return int(self._frames[self._latest]), self._values[self._latest].copy()

    def rows(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame numbers, values) of rows ``start:stop``, copied; rows not counted are NaN."""
        with self._lock:
            stop = self.submitted if stop is None else stop
            return self._frames[start:stop].copy(), self._values[start:stop].copy()

    def resolved(self) -> int:
        """How many rows from the first are counted or skipped: their values are final (what
        a flush can write, and what a client may sum; ``counted + skipped`` is not that, as
        threads finish rows out of order and a skipped row is recorded before those queued)."""
        with self._lock:
            return self._resolved


class RoiCounter:
    """A receiver's ROI definitions, the counting threads and the current series' values."""

    def __init__(self, table: dict[str, Any], stats: Stats, name: str, cpu: float) -> None:
        self.table = table  # for the next series
        # ``cpu`` cores at most (the entry's ``roi_cpu``): threads enough, each pausing after a
        # count for as long as keeps it to its share. Nice alone does not protect the writer:
        # a counting thread on a core's hyperthread sibling, or in its caches, slows it too.
        self._nthreads = math.ceil(cpu)
        self._share = cpu / self._nthreads
        self._hurry = threading.Event()  # set while a closing file waits: no pauses
        self.series: RoiSeries | None = None
        self._stats = stats
        self._name = name
        self._queue: queue.SimpleQueue[tuple[RoiSeries, int, list[Plane], int] | None] = (
            queue.SimpleQueue()
        )
        self._held = [0, 0]  # bytes and items queued
        # CPU seconds a byte of a frame takes to count, lately (a thread the scheduler holds
        # back costs nothing)
        self._cost = FIRST_COST_PER_BYTE
        self._held_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._behind_told = False

    @property
    def wanted(self) -> bool:
        """Whether decoders should keep the pixels they make (ROIs now or at the next series)."""
        return bool(self.table) or self.series is not None

    def define(self, table: Any) -> dict[str, Any]:
        """Set the definitions for the next series (JSON text or a mapping, checked)."""
        self.table = parse_table(table)
        log.info("%s: ROIs from the next series on: %s", self._name, list(self.table) or "none")
        return self.table

    # --- engine thread -------------------------------------------------------------------
    def begin_series(self) -> None:
        self.series = RoiSeries(self.table, self._stats.series_count) if self.table else None
        self._behind_told = False
        self._hurry.clear()
        if self.series is not None and not self._threads:
            self._threads = [
                threading.Thread(target=self._run, daemon=True, name=f"{self._name}-roi-{i}")
                for i in range(self._nthreads)
            ]
            for thread in self._threads:
                thread.start()

    def submit(self, image: Image) -> None:
        if self.series is not None:
            self._put(self.series, [image.frame], [plane_of(image)])

    def submit_run(self, run: FrameRun) -> None:
        if self.series is not None:
            dtype = np.dtype(run.dtype)
            self._put(
                self.series,
                list(range(run.first, run.first + len(run))),
                [Plane(run.shape, dtype, None, chunk) for chunk in run.chunks],
            )

    def _put(self, series: RoiSeries, frames: list[int], planes: list[Plane]) -> None:
        row = series.reserve(frames)
        nbytes = sum(p.nbytes for p in planes)
        with self._held_lock:
            bytes_held, items = self._held
            fits = not items or (
                bytes_held + nbytes <= QUEUE_BYTES
                and items < QUEUE_ITEMS
                and (bytes_held + nbytes) * self._cost <= BACKLOG_S * self._nthreads
            )
            if fits:
                self._held[0] += nbytes
                self._held[1] += 1
        if fits:
            self._queue.put((series, row, planes, nbytes))
            return
        for i in range(len(frames)):
            series.record(row + i, None)
        self._stats.add("roi_skipped", len(frames))
        if not self._behind_told:
            self._behind_told = True
            self._report(
                f"ROI counting falls behind in series {self._series_label()}: frames "
                f"are stored but not counted (roi_skipped)"
            )

    def save(self, writer: SeriesWriter, now: float = 0.0, final: bool = False) -> None:
        """Write the rows counted so far into the series' file, at most once per flush
        interval; ``final`` (the file closes) first waits for the counts still queued."""
        series = self.series
        if series is None or writer.failed:
            return
        if final:
            self._hurry.set()
            series.wait(FINAL_WAIT_S)
        elif now - series.last_save < writer.flush_interval_s:
            return
        series.last_save = now
        if series.file_base is None:
            series.file_base = existing_rows(writer.file, series.table)
        stop = series.submitted if final else series.resolved()
        frames, values = series.rows(series.saved, stop)
        write_rows(writer.file, series.table, frames, values, series.file_base + series.saved)
        series.saved = stop

    def end_series(self) -> None:
        """Wait (at most FINAL_WAIT_S) for the counts still queued, then say what was skipped."""
        series = self.series
        if series is None:
            return
        self._hurry.set()
        if not series.wait(FINAL_WAIT_S):
            self._report(
                f"ROI counts of series {self._series_label()} still queued after "
                f"{FINAL_WAIT_S} s; a file of the series lacks them"
            )
        if series.skipped:
            self._report(
                f"series {self._series_label()}: {series.skipped} of "
                f"{series.submitted} frames not ROI-counted"
            )

    def close(self) -> None:
        self._hurry.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _series_label(self) -> str:
        return self._stats.series_id or f"#{self._stats.series_count}"

    def _report(self, text: str) -> None:
        log.warning("%s: %s", self._name, text)
        self._stats.warn(f"{self._name}: {text}")

    # --- counting threads ----------------------------------------------------------------
    def _run(self) -> None:
        try:  # Linux: a thread's own nice value (elsewhere counting runs at normal priority)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except (AttributeError, OSError) as exc:
            log.debug("%s: counting thread keeps its priority: %s", self._name, exc)
        while (item := self._queue.get()) is not None:
            series, row, planes, nbytes = item
            start = time.thread_time()
            try:
                for i, plane in enumerate(planes):
                    self._count(series, row + i, plane)
            finally:
                used = time.thread_time() - start
                with self._held_lock:
                    self._cost += (used / max(nbytes, 1) - self._cost) / 4
                    self._held[0] -= nbytes
                    self._held[1] -= 1
            self._hurry.wait(used * (1 / self._share - 1))

    def _count(self, series: RoiSeries, row: int, plane: Plane) -> None:
        if not series.shape_checked:
            series.shape_checked = True
            for text in misplaced(series.table, plane.shape):
                self._report(f"{text}: counted over the part inside")
        try:
            values = count(series.rois, plane)
        except ValueError as exc:  # a chunk the writer stores as is, but cannot be decoded
            values = None
            self._stats.add("roi_skipped")
            self._report(f"frame of row {row}: not ROI-counted: {exc}")
        series.record(row, values)
