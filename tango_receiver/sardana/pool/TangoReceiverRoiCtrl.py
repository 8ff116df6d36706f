"""A Sardana counter/timer controller for one tango_receiver's ROIs: a channel per ROI, whose
value for a step-scan point is the ROI's sum over the point's frames.

A counter/timer controller, not a 0D one: the Pool waits for a counter channel to leave MOVING
before it reads it, which is what a point counted after its frames are written needs, whereas a
0D channel is read over and over until the timer ends and its value is their mean or last.
The controller times nothing (the detector's controller is the timer).

The Pool loads this file from its ``PoolPath`` as a top-level module, hence the absolute
imports. Like the 2D controller it reads the receiver's Tango device only (``ReceiverDevice``),
once per poll for all channels (``StateAll``); which frames belong to a point is
``points.Point``, the 2D controller's rule, and ``Point.counted`` / ``Point.roi_sums`` add when
their ROI values are final and what they sum to.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import tango
from sardana import State
from sardana.pool.controller import (
    Access,
    CounterTimerController,
    DataAccess,
    Description,
    FGet,
    FSet,
    Memorize,
    Memorized,
    Type,
)

from tango_receiver.sardana.points import Point, PointFault, Progress
from tango_receiver.sardana.receiver_device import (
    FRAMES_PER_POINT,
    RECEIVER_DEVICE,
    ROI_PROGRESS,
    frames_per_point,
    read_progress,
    read_roi_rows,
    refuse_continuous,
)

log = logging.getLogger(__name__)


class TangoReceiverRoiController(CounterTimerController):
    """A receiver's ROIs as counter channels: each axis counts the ROI its ``RoiName`` names
    (a name, not a column number: a new ROI table may order its ROIs otherwise)."""

    model = "tango_receiver ROIs"
    organization = "tango_receiver"

    ctrl_properties = {"ReceiverDevice": RECEIVER_DEVICE}
    ctrl_attributes = {"FramesPerPoint": FRAMES_PER_POINT}
    axis_attributes = {
        "RoiName": {
            Type: str,
            Access: DataAccess.ReadWrite,
            Memorize: Memorized,
            FGet: "get_roi_name",
            FSet: "set_roi_name",
            Description: "the receiver's ROI this channel counts (one of its roi_names)",
        },
    }

    def __init__(self, inst: str, props: dict, *args: Any, **kwargs: Any) -> None:
        CounterTimerController.__init__(self, inst, props, *args, **kwargs)
        self._proxy = tango.DeviceProxy(self.ReceiverDevice)
        self._frames_per_point = 1
        self._frames = 1  # of the loaded acquisition
        self._roi_names: dict[int, str] = {}
        self._point: Point | None = None  # while its frames are awaited
        self._started: set[int] = set()  # axes of the point
        self._values: dict[int, float] = {}  # of the last point
        self._failed: dict[int, str] = {}  # why an axis of the last point has no value
        self._ended_now = False  # the last point ended in this poll (StateAll)
        self._receiver_fault = ""

    # --- axes and attributes -------------------------------------------------------------
    def AddDevice(self, axis: int) -> None:
        self._roi_names[axis] = ""

    def DeleteDevice(self, axis: int) -> None:
        del self._roi_names[axis]

    def get_roi_name(self, axis: int) -> str:
        return self._roi_names[axis]

    def set_roi_name(self, axis: int, value: str) -> None:
        self._roi_names[axis] = value

    def get_frames_per_point(self) -> int:
        return self._frames_per_point

    def set_frames_per_point(self, value: int) -> None:
        self._frames_per_point = frames_per_point(value)

    # --- acquisition ---------------------------------------------------------------------
    def LoadOne(self, axis: int, integ_time: float, repetitions: int, latency_time: float) -> None:
        """The frames each acquisition waits for (the Pool loads one axis per controller)."""
        self._frames = self._frames_per_point * repetitions

    def PreStartAll(self) -> None:
        self._point = None
        self._started.clear()
        self._values.clear()
        self._failed.clear()

    def StartOne(self, axis: int, value: Any = None) -> None:
        """Note where the series stands, once for all channels: the point's frames are the
        next ones written (the Pool starts the detector after this)."""
        if self._point is None:
            self._point = Point(self._frames, read_progress(self._proxy, ROI_PROGRESS))
        self._started.add(axis)

    def StateAll(self) -> None:
        """One read of the receiver for every channel; the point ends once its frames are
        written and their ROI values final, then each channel's value is its ROI's sum."""
        now = read_progress(self._proxy, ROI_PROGRESS)
        self._receiver_fault, self._ended_now = now.fault, False
        if self._point is None:
            return
        try:
            if not self._point.counted(now):
                return
            sums = self._point.roi_sums(now, read_roi_rows(self._proxy))
        except PointFault as exc:
            self._fail(str(exc))
        else:
            self._take(sums, now)
        self._point, self._ended_now = None, True

    def _fail(self, reason: str) -> None:
        text = f"{self.ReceiverDevice}: {reason}"
        log.error("%s", text)
        self._failed = dict.fromkeys(self._started, text)

    def _take(self, sums: dict[str, float], now: Progress) -> None:
        for axis in self._started:
            name = self._roi_names[axis]
            if name in sums:
                self._values[axis] = sums[name]
            else:
                self._failed[axis] = (
                    f"{self.ReceiverDevice}: no ROI {name!r} in series {now.series_count} "
                    f"(its ROIs: {', '.join(sums)}): set the channel's RoiName"
                )

    def StateOne(self, axis: int) -> tuple[Any, str]:
        """MOVING while the point's frames are awaited; FAULT with the reason in the poll
        that finds the point will have no value (the Pool then ends the acquisition in Fault).
        Between points the receiver's own FAULT, else ON: a receiver Reset after a fault
        lets the next scan start."""
        if self._point is not None and axis in self._started:
            return State.Moving, f"waiting for {self._point.frames} frames written and ROI-counted"
        if axis in self._failed and self._ended_now:
            return State.Fault, self._failed[axis]
        if self._receiver_fault:
            return State.Fault, f"{self.ReceiverDevice}: {self._receiver_fault}"
        if axis in self._values:
            return State.On, f"{self._roi_names[axis]}: {self._values[axis]}"
        return State.On, self._failed.get(axis, "idle")

    def ReadOne(self, axis: int) -> float:
        """The ROI's sum over the last point's frames; NaN while none (a point running)."""
        if axis in self._failed:
            raise RuntimeError(self._failed[axis])
        return self._values.get(axis, math.nan)

    def AbortOne(self, axis: int) -> None:
        self._point = None

    # --- parameters ----------------------------------------------------------------------
    def SetCtrlPar(self, parameter: str, value: Any) -> None:
        """Step scans only: one value per acquisition (``refuse_continuous``)."""
        refuse_continuous(self.ReceiverDevice, parameter, value)
        CounterTimerController.SetCtrlPar(self, parameter, value)
