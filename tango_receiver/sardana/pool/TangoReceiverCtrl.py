"""A Sardana 2D controller for one tango_receiver: its channel's value is a reference to the
frames of each scan point in the receiver's file, so Sardana never moves the frames.

The Pool loads this file from its ``PoolPath`` (``tango_receiver.sardana.POOL_PATH``) as a
top-level module, hence the absolute imports. It talks to the receiver through its Tango device
only (``ReceiverDevice`` property): ``series_count`` / ``series_done`` / ``frames_written`` /
``filename`` read in one request are one snapshot of the receiver, so the point's progress is
never judged from counters of two different moments (sardana/receiver_device.py).
"""

from __future__ import annotations

import logging
from typing import Any

import tango
from sardana import State
from sardana.pool import AcqSynch
from sardana.pool.controller import Referable, TwoDController

from tango_receiver.sardana.points import Point, PointFault
from tango_receiver.sardana.receiver_device import (
    FRAMES_PER_POINT,
    RECEIVER_DEVICE,
    frames_per_point,
    read_progress,
    refuse_continuous,
)

log = logging.getLogger(__name__)


class TangoReceiverTwoDController(TwoDController, Referable):
    """One receiver as one 2D channel (axis 1) whose value reference names the frames each
    point wrote: ``h5file:///data/scan.h5::entry/instrument/detector/data[first:stop]``."""

    gender = "2D controller"
    model = "tango_receiver"
    organization = "tango_receiver"
    MaxDevice = 1

    ctrl_properties = {"ReceiverDevice": RECEIVER_DEVICE}
    axis_attributes = {"FramesPerPoint": FRAMES_PER_POINT}

    def __init__(self, inst: str, props: dict, *args: Any, **kwargs: Any) -> None:
        TwoDController.__init__(self, inst, props, *args, **kwargs)
        self._proxy = tango.DeviceProxy(self.ReceiverDevice)
        self._synchronization = AcqSynch.SoftwareTrigger
        self._frames_per_point = 1
        self._frames = 1  # of the loaded acquisition
        self._point: Point | None = None  # while its frames are awaited
        self._reference = ""  # of the last point, once its frames are written
        self._failed = ""  # why the last point's frames never will be (RefOne says it)
        self._axis_pars: dict[str, Any] = {}

    # --- axes ----------------------------------------------------------------------------
    def AddDevice(self, axis: int) -> None:
        if axis != 1:
            raise ValueError(f"{self.ReceiverDevice}: one receiver is one channel: axis 1 only")

    def DeleteDevice(self, axis: int) -> None:
        self._point = None

    def get_frames_per_point(self, axis: int) -> int:
        return self._frames_per_point

    def set_frames_per_point(self, axis: int, value: int) -> None:
        self._frames_per_point = frames_per_point(value)

    # --- acquisition ---------------------------------------------------------------------
    def LoadOne(self, axis: int, integ_time: float, repetitions: int, latency_time: float) -> None:
        """The frames each acquisition waits for: FramesPerPoint for each repetition."""
        self._frames = self._frames_per_point * repetitions

    def StartOne(self, axis: int, value: Any = None) -> None:
        """Note where the series stands: the point's frames are the next ones written. The
        Pool starts the timer (the detector) after this, so none of them is written yet."""
        self._point = Point(self._frames, read_progress(self._proxy))
        self._reference = self._failed = ""
        log.debug(
            "%s: point of %d frames from %s", self.ReceiverDevice, self._frames, self._point.start
        )

    def StateOne(self, axis: int) -> tuple[Any, str]:
        """MOVING until the point's frames are written, then ON; FAULT with the receiver's
        reason when they never will be. Between points, the receiver's own FAULT or ON: a
        receiver Reset after a fault lets the next scan start."""
        now = read_progress(self._proxy)
        if self._point is None:
            if now.fault:
                return State.Fault, f"{self.ReceiverDevice}: {now.fault}"
            return State.On, self._reference or self._failed or "idle"
        try:
            if not self._point.done(now):
                return State.Moving, f"waiting for {self._point.frames} frames"
            self._reference = str(self._point.reference(now, self._proxy.dset_name))
        except PointFault as exc:
            self._failed = f"{self.ReceiverDevice}: {exc}"
            log.error("%s", self._failed)
            return State.Fault, self._failed
        finally:
            if self._reference or self._failed:
                self._point = None
        return State.On, self._reference

    def RefOne(self, axis: int) -> str:
        if not self._reference:
            raise RuntimeError(self._failed or "the point's frames are not written")
        return self._reference

    def ReadOne(self, axis: int) -> Any:
        """Without value referencing the value is the receiver's latest frame (live view)."""
        return self._proxy.last_image

    def AbortOne(self, axis: int) -> None:
        self._point = None

    # --- parameters ----------------------------------------------------------------------
    def SetCtrlPar(self, parameter: str, value: Any) -> None:
        """Step scans only: one reference per acquisition (``refuse_continuous``)."""
        refuse_continuous(self.ReceiverDevice, parameter, value)
        TwoDController.SetCtrlPar(self, parameter, value)

    def GetAxisPar(self, axis: int, parameter: str) -> Any:
        """``shape`` is a frame's (the NeXus recorder lays out the scan's frames by it)."""
        if parameter == "shape":
            return list(self._proxy.frame_shape)
        return self._axis_pars.get(parameter)

    def SetAxisPar(self, axis: int, parameter: str, value: Any) -> None:
        """value_ref_enabled / value_ref_pattern are kept: references always name the
        receiver's own file, which the receiver, not Sardana, chose."""
        self._axis_pars[parameter] = value
