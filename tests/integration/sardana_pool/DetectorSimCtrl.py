"""The detector of the Sardana scan tests, as the Pool's timer: each acquisition sends one
point's frames to the receiver over ZMQ, like a detector triggered once per point.

The Pool loads this file from its PoolPath. The controller binds a free port (its ``Endpoint``
attribute, where the receiver connects); the test writes the scenario (JSON) into its
``Scenario`` attribute before each scan:

- ``frames`` per point, ``points``, frame ``shape`` and ``dtype``; point k's frames are
  ``synthetic_frames(frames, shape, dtype, rate=2, seed=k)``, which the test regenerates;
- ``series``: ``"scan"`` (one series into ``filename``, header at the first point, series_end
  ``end_delay_s`` after the last) or ``"point"`` (a series per point, into ``files[point]``).
"""

from __future__ import annotations

import json
import threading

from sardana import State
from sardana.pool.controller import Access, CounterTimerController, DataAccess, FGet, FSet, Type

from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender


def point_frames(scenario: dict, point: int) -> list:
    return synthetic_frames(
        scenario["frames"], tuple(scenario["shape"]), scenario["dtype"], rate=2.0, seed=point
    )


def scan_series(scenario: dict) -> list[list[bytes]]:
    """One series of every point's frames: header, images, series_end."""
    every = [frame for p in range(scenario["points"]) for frame in point_frames(scenario, p)]
    return list(internal_series(every, scenario["filename"]))


def point_messages(scenario: dict, point: int) -> list[list[bytes]]:
    """What the detector sends at acquisition ``point`` (the series_end of a scan-long series
    comes later, see ``DetectorSimController._end``)."""
    if scenario["series"] == "point":
        return list(internal_series(point_frames(scenario, point), scenario["files"][point]))
    messages = scan_series(scenario)
    first = 1 + point * scenario["frames"]
    return ([messages[0]] if point == 0 else []) + messages[first : first + scenario["frames"]]


class DetectorSimController(CounterTimerController):
    """Counter/timer whose value is the messages sent in the acquisition."""

    MaxDevice = 1
    ctrl_attributes = {
        "Scenario": {
            Type: str,
            Access: DataAccess.ReadWrite,
            FGet: "get_scenario",
            FSet: "set_scenario",
        },
        "Endpoint": {Type: str, Access: DataAccess.ReadOnly, FGet: "get_endpoint"},
    }

    def __init__(self, inst, props, *args, **kwargs):
        CounterTimerController.__init__(self, inst, props, *args, **kwargs)
        self._sender = Sender(timeout_s=30)  # a free port: the receiver connects to it
        self._scenario: dict = {}
        self._point = 0
        self._sent = 0
        self._thread: threading.Thread | None = None

    def get_endpoint(self):
        return self._sender.endpoint

    def get_scenario(self):
        return json.dumps(self._scenario)

    def set_scenario(self, value):
        self._scenario, self._point = json.loads(value), 0

    def AddDevice(self, axis):
        pass

    def DeleteDevice(self, axis):
        self._sender.close()

    def LoadOne(self, axis, value, repetitions, latency):
        pass

    def StartOne(self, axis, value=None):
        pass

    def StartAll(self):
        point, self._point, self._sent = self._point, self._point + 1, 0
        self._thread = threading.Thread(target=self._send, args=(point,), daemon=True)
        self._thread.start()

    def _send(self, point: int) -> None:
        for message in point_messages(self._scenario, point):
            self._sender.send([message])
            self._sent += 1
        if self._scenario["series"] == "scan" and point == self._scenario["points"] - 1:
            threading.Timer(self._scenario["end_delay_s"], self._end).start()

    def _end(self) -> None:
        self._sender.send([scan_series(self._scenario)[-1]])

    def StateOne(self, axis):
        if self._thread is not None and self._thread.is_alive():
            return State.Moving, "sending"
        return State.On, "idle"

    def ReadOne(self, axis):
        return float(self._sent)

    def AbortOne(self, axis):
        pass
