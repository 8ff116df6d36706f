"""The receiver's ROIs as Tango attributes and commands, a base of ``ReceiverDevice``.

What it declares (values from ``Receiver.rois``, engine/roi.py; one entry per ROI, in the order
of ``roi_names``):

- ``roi_definitions`` (str): the definitions that apply from the next series, as JSON
  (rois.py); ``SetRois(json)`` sets them (``{}`` for none). (The device property ``rois``, like
  every detectors.yaml key, gives the ones the receiver starts with.)
- ``roi_names`` (str[]), ``roi_frame`` (int, -1 before one), ``roi_sum``, ``roi_max``,
  ``roi_count`` (float[]: the newest frame counted in the current or last series) and
  ``roi_skipped`` (frames not counted): change events, pushed by the device's event thread.
- ``roi_sums`` (IMAGE, float): the series so far, a row per image, a column per ROI, NaN where
  a frame was not counted; ``RoiSums(name)`` gives one ROI's column as a spectrum. This is
  what a Sardana counter channel reads for a scan point's frames.
- ``roi_series`` (int): which series the values are of (its ``series_count``; 0: none), and
  ``roi_resolved`` (int): rows from the first whose values are final (counted, or skipped). Read
  with ``series_count`` and ``frames_written`` in one request, they tell a client whether a
  point's rows are final and of the series it counts (sardana/points.py).

The ROI attributes read in one request come from one series (``read_roi_series``), as the
counters come from one snapshot.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from tango.server import Device, attribute, command

from ..engine.receiver import Receiver
from ..engine.roi import COUNT, MAX, SUM, RoiSeries
from ..engine.stats import StatsSnapshot
from ..rois import MAX_ROIS, table_json

MAX_SERIES_ROWS = 1 << 20  # rows of roi_sums a client may read
#: attributes with change events (``roi_values``)
EVENTED = ("roi_names", "roi_frame", "roi_sum", "roi_max", "roi_count", "roi_skipped")


def roi_status(snap: StatsSnapshot) -> str:
    """What the Status adds when ROI counting fell behind (not a loss: every frame is stored)."""
    if not snap.roi_skipped:
        return ""
    return (
        f"\nROI counting: {snap.roi_skipped} frames of the series stored but not counted "
        f"(roi_skipped); give it more cores with roi_cpu."
    )


class RoiAttributes(Device):
    """ROI definitions and values of the receiver (see the module's docstring)."""

    _read_series: RoiSeries | None = None  # of the current client request (read_roi_series)

    @property
    def receiver(self) -> Receiver:  # ReceiverDevice provides it
        raise NotImplementedError

    def read_roi_series(self, receiver: Receiver | None) -> None:
        """Take the series whose values this client request reads, once: ``roi_series``,
        ``roi_resolved``, ``roi_names`` and ``roi_sums`` read together then agree. Called after
        the request's snapshot: the engine begins a series' ROI values before it writes the
        series' first frame, so once the snapshot counts a frame written, this is the
        snapshot's series or a later one (``roi_series`` says which), never an earlier one."""
        self._read_series = receiver.rois.series if receiver is not None else None

    def roi_values(self, series: RoiSeries | None) -> dict[str, Any]:
        """Every evented attribute's value, read once from ``series``."""
        names = list(series.names) if series is not None else []
        frame, values = series.latest() if series is not None else (-1, np.zeros((0, 3)))
        return {
            "roi_names": names,
            "roi_frame": frame,
            "roi_sum": values[:, SUM],
            "roi_max": values[:, MAX],
            "roi_count": values[:, COUNT],
            "roi_skipped": self.receiver.snapshot().roi_skipped,
        }

    @attribute(
        dtype=str,
        doc="ROI definitions for the next series, JSON: name -> [row0, row1, "
        'col0, col1] or {"channel": c, "bins": [b0, b1]}',
    )
    def roi_definitions(self) -> str:
        return self._definitions_json()

    def _definitions_json(self) -> str:
        return json.dumps(table_json(self.receiver.rois.table))

    @command(
        dtype_in=str,
        doc_in="ROI definitions as JSON (see roi_definitions); they apply from the next series",
    )
    def SetRois(self, definitions: str) -> None:
        self.receiver.set_rois(definitions)
        self.push_change_event("roi_definitions", self._definitions_json())

    @attribute(dtype=(str,), max_dim_x=MAX_ROIS, doc="ROIs of the current or last series")
    def roi_names(self) -> list[str]:
        return self.roi_values(self._read_series)["roi_names"]

    @attribute(dtype=int, doc="frame number of roi_sum, roi_max, roi_count (-1: none yet)")
    def roi_frame(self) -> int:
        return self.roi_values(self._read_series)["roi_frame"]

    @attribute(dtype=(float,), max_dim_x=MAX_ROIS, doc="newest frame's sum per ROI")
    def roi_sum(self) -> Any:
        return self.roi_values(self._read_series)["roi_sum"]

    @attribute(dtype=(float,), max_dim_x=MAX_ROIS, doc="newest frame's maximum per ROI")
    def roi_max(self) -> Any:
        return self.roi_values(self._read_series)["roi_max"]

    @attribute(dtype=(float,), max_dim_x=MAX_ROIS, doc="newest frame's pixels above zero per ROI")
    def roi_count(self) -> Any:
        return self.roi_values(self._read_series)["roi_count"]

    @attribute(
        dtype=int,
        doc="frames of this series stored but not ROI-counted (counting fell behind)",
    )
    def roi_skipped(self) -> int:
        return self.receiver.snapshot().roi_skipped

    @attribute(
        dtype=int,
        doc="the series the ROI values are of, as series_count numbers it (0: none)",
    )
    def roi_series(self) -> int:
        series = self._read_series
        return series.number if series is not None else 0

    @attribute(
        dtype=int,
        doc="rows of roi_sums from the first whose values are final: counted, or skipped (NaN)",
    )
    def roi_resolved(self) -> int:
        series = self._read_series
        return series.resolved() if series is not None else 0

    @attribute(
        dtype=((float,),),
        max_dim_x=MAX_ROIS,
        max_dim_y=MAX_SERIES_ROWS,
        doc="per-frame sums of the series so far: a row per image, a column per ROI "
        "(roi_names), NaN where not counted",
    )
    def roi_sums(self) -> Any:
        series = self._read_series
        if series is None:
            return np.zeros((0, 0))
        return series.rows(max(0, series.submitted - MAX_SERIES_ROWS))[1][:, :, SUM]

    @command(
        dtype_in=str,
        dtype_out=(float,),
        doc_in="ROI name",
        doc_out="its sum per image of the current or last series (NaN: not counted)",
    )
    def RoiSums(self, name: str) -> Any:
        series = self.receiver.rois.series
        if series is None or name not in series.names:
            raise ValueError(f"no ROI {name!r} in the current or last series")
        return series.rows()[1][:, series.names.index(name), SUM]

    # --- events (called by ReceiverDevice) ---------------------------------------------------
    def init_roi_events(self) -> None:
        for name in ("roi_definitions", *EVENTED):
            self.set_change_event(name, True, False)

    def push_roi_changes(self, last: dict[str, Any]) -> None:
        """Change events for the ROI attributes whose value moved since ``last``."""
        for name, value in self.roi_values(self.receiver.rois.series).items():
            key = f"roi:{name}"
            seen = repr(value.tolist() if isinstance(value, np.ndarray) else value)  # NaN == NaN
            if last.get(key) != seen:
                last[key] = seen
                self.push_change_event(name, value)
