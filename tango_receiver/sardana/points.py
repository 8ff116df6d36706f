"""Where one scan point's frames are, from the counters the receiver's device publishes.

Pure logic, no Tango and no Sardana: the controller reads a ``Progress`` from the device at each
``StartOne`` and ``StateOne``, and a ``Point`` says whether that point's frames are written, where
they are, or why they never will be. Kept apart so that the rules are tested without a Pool.

A point's frames are the first ``frames`` written after ``StartOne``: in the series open then
(one series for the whole scan), or else in the next series (one series per point). The receiver
counts ``frames_written`` per series, and each series writes its own file, so a point's frames
are rows ``first .. first + frames`` of the file's frame stack, and of the series' ROI values
(``roi_sums``: row i is the series' i-th image, as in the file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: ``h5file://<absolute file>::<dataset without leading slash>[first:stop]``: the form of
#: Sardana's h5file references, plus the rows of the frame stack (half-open, as in Python).
REFERENCE = re.compile(
    r"^h5file://(?P<file>/[^:]+)::(?P<dataset>[^\[/][^\[]*)"
    r"\[(?P<first>\d+):(?P<stop>\d+)\]$"
)


@dataclass(frozen=True)
class FrameRange:
    """Rows ``first .. stop`` of ``dataset`` (no leading slash) in ``file``."""

    file: str
    dataset: str
    first: int
    stop: int

    def __str__(self) -> str:
        return f"h5file://{self.file}::{self.dataset}[{self.first}:{self.stop}]"

    @classmethod
    def parse(cls, reference: str) -> FrameRange | None:
        """The range a reference names, or None for any other reference (left to Sardana)."""
        found = REFERENCE.match(reference)
        if found is None or int(found["stop"]) < int(found["first"]):
            return None
        return cls(found["file"], found["dataset"], int(found["first"]), int(found["stop"]))


@dataclass(frozen=True)
class Progress:
    """What the receiver's device says, read in one request (one snapshot)."""

    series_count: int  # series begun
    series_done: int  # series ended
    frames_written: int  # in the current or last series
    filename: str  # of the current or last series
    fault: str  # the receiver's reason when it is in FAULT, else ""
    roi_series: int  # the series the ROI values are of (its series_count; 0: none)
    roi_resolved: int  # its rows from the first whose ROI values are final (counted or skipped)

    @property
    def in_series(self) -> bool:
        return self.series_done < self.series_count


class PointFault(Exception):
    """The point's frames will not all be written; the text is what the operator reads."""


@dataclass(frozen=True)
class Point:
    """One point: ``frames`` frames, counted from where the series stood at ``StartOne``."""

    frames: int
    start: Progress

    def first(self, now: Progress) -> int | None:
        """Row of the point's first frame in ``now``'s series; None while that series has not
        begun (one series per point: the detector has not sent its header yet)."""
        if now.series_count == self.start.series_count:
            return self.start.frames_written if self.start.in_series else None
        return 0  # a series begun since StartOne holds the point from its first frame

    def done(self, now: Progress) -> bool:
        """True once every frame of the point is written; PointFault when it never will be."""
        if now.fault:
            raise PointFault(now.fault)
        if now.series_count > self.start.series_count + 1:
            raise PointFault(
                f"{now.series_count - self.start.series_count} series began "
                f"during one point of {self.frames} frames"
            )
        first = self.first(now)
        if first is None:
            return False
        if now.frames_written >= first + self.frames:
            return True
        if not now.in_series:
            raise PointFault(
                f"series ended after {now.frames_written - first} of the point's "
                f"{self.frames} frames ({now.filename or 'no file'})"
            )
        return False

    def rows(self, now: Progress) -> range:
        """The point's rows in ``now``'s series (``done`` said True)."""
        first = self.first(now)
        if first is None:
            raise PointFault("the point's series has not begun")
        return range(first, first + self.frames)

    def reference(self, now: Progress, dset_name: str) -> FrameRange:
        """Where the point's frames are in the file (``done`` said True)."""
        if not now.filename:
            raise PointFault(
                "the point's frames went into no file (the detector's header "
                "named none, or saving is off)"
            )
        rows = self.rows(now)
        return FrameRange(now.filename, dset_name.lstrip("/"), rows.start, rows.stop)

    def counted(self, now: Progress) -> bool:
        """True once the point's frames are written and their ROI values final (counted, or
        skipped: counting runs beside the write and may lag it); PointFault when they never
        will be. ``now`` counts the point's frames written, so its series' ROI values had
        begun when it was read (roi_attributes.py): any other ``roi_series`` is a fault."""
        if not self.done(now):
            return False
        if now.roi_series != now.series_count:
            raise PointFault(
                f"series {now.series_count} counts no ROIs: set them (SetRois) before the scan"
                if now.roi_series < now.series_count
                else f"series {now.roi_series} began before the point's ROI values were read"
            )
        return now.roi_resolved >= self.rows(now).stop

    def roi_sums(self, now: Progress, read: RoiRows) -> dict[str, float]:
        """Each ROI's sum over the point's frames (``counted(now)`` said True; ``read`` taken
        after ``now``); PointFault when a frame of the point was not counted: a sum without
        it would be silently wrong."""
        if read.series != now.series_count:
            raise PointFault(f"series {read.series} began before the point's ROI values were read")
        if len(read.sums) >= read.window:
            raise PointFault(
                f"series {read.series} has more images than roi_sums holds ({read.window})"
            )
        rows = self.rows(now)
        sums = read.sums[rows.start : rows.stop]
        not_counted = int(np.isnan(sums).any(axis=1).sum())
        if not_counted:
            raise PointFault(
                f"{not_counted} of the point's {self.frames} frames not ROI-counted "
                f"(roi_skipped: counting fell behind; give the receiver more roi_cpu)"
            )
        return dict(zip(read.names, sums.sum(axis=0).tolist(), strict=True))


@dataclass(frozen=True)
class RoiRows:
    """The ROI values of one series, read in one request (``roi_series``, ``roi_names``,
    ``roi_sums``): a row per image, a column per name, NaN where not counted (or not yet)."""

    series: int
    names: tuple[str, ...]
    sums: np.ndarray
    window: int  # the most rows roi_sums gives: a longer series' first rows are not in it
