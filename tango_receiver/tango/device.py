"""One receiver as a Tango device, so Sardana, Taurus and plain Tango clients drive it like any
other device.

The device keeps no counters of its own: every read and every event comes from one
``StatsSnapshot`` of the engine, the same source the REST sidecar reads, so a Tango client and an
HTTP client can never disagree on a frame count. A client request that reads several attributes
gets them all from one snapshot (``read_attr_hardware``), so ``frames_received`` and
``frames_written`` read together are consistent.

Events are pushed by code from one thread at most 10 times a second, whatever the frame rate:
change events on State and the counters, archive events on the counters, data-ready events on
``last_image``. GUIs subscribe instead of polling.
"""

from __future__ import annotations

import logging
import struct
import sys
import threading
import time
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import tango
import zmq
from tango import AttrQuality, AttrWriteType, DevState
from tango.server import Device, attribute, command, device_property

from ..config import ConfigError, ReceiverConfig, load_receiver, parse_entry
from ..engine.liveview import DOWNSAMPLE_MAX, DOWNSAMPLE_MIN
from ..engine.receiver import Receiver
from ..engine.stats import ERROR, StatsSnapshot
from .roi_attributes import RoiAttributes, roi_status

log = logging.getLogger(__name__)

EVENT_PERIOD_S = 0.1  # change events at most 10 Hz: GUIs need no more, the engine pays nothing
MAX_IMAGE_DIM = 8192

#: Snapshot fields published as attributes with change events; counters get archive events too.
COUNTERS = ("frames_received", "frames_written", "frames_forwarded", "frames_missing",
            "frames_invalid", "forward_dropped", "forward_no_consumer", "frames_discarded",
            "last_frame_number", "series_count")
GAUGES = ("frame_rate", "data_rate", "compression_ratio", "filename", "series_id")

# LImA's VIDEO_IMAGE, as taurus.core.util.codecs.VideoImageCodec reads it: magic 'VDEO',
# header version, image mode, frame number, width, height, endianness, header size, padding.
VIDEO_HEADER = struct.Struct("!IHHqiiHHHH")
VIDEO_MAGIC = 0x5644454F
VIDEO_MODES = {np.dtype(np.uint8): 0, np.dtype(np.uint16): 1, np.dtype(np.uint32): 2,
               np.dtype(np.uint64): 3}  # Y8, Y16, Y32, Y64


def state_of(snap: StatsSnapshot) -> DevState:
    """FAULT on a receiver error, RUNNING during a series, ALARM when the last series lost
    frames (until Reset acknowledges those losses), OFF when not listening, else ON."""
    if snap.state == ERROR:
        return DevState.FAULT
    if snap.in_series:
        return DevState.RUNNING
    if snap.alarm:
        return DevState.ALARM
    return DevState.ON if snap.connected else DevState.OFF


def status_of(snap: StatsSnapshot, state: DevState) -> str:
    """The Status string: what the receiver does and why, for the person at the beamline."""
    target = snap.filename or "no file (forwarding only)"
    series = f"series {snap.series_id}" if snap.series_id else "series"
    counts = (f"{snap.frames_received} frames received, {snap.frames_written} written, "
              f"{snap.frames_forwarded} forwarded")
    losses = ", ".join(f"{n} {what}" for n, what in (
        (snap.frames_missing, "missing"), (snap.frames_invalid, "invalid"),
        (snap.forward_dropped, "dropped on the secondary port"),
        (snap.frames_discarded, "discarded after Abort")) if n)
    if state == DevState.FAULT:
        return (f"FAULT: {snap.error}\nLast {series} -> {target}: {counts}.\n"
                f"Fix the cause, then run Reset.")
    if state == DevState.RUNNING:
        problems = f"\nProblems so far: {losses}." if losses else ""
        return (f"Receiving {series} -> {target}: {counts}, {snap.frame_rate:.0f} frames/s, "
                f"{snap.data_rate / 1e6:.1f} MB/s.{problems}")
    if snap.series_count == 0:
        last = "No series received yet."
    else:
        done = "complete" if snap.series_complete else "incomplete"
        last = f"Last {series} -> {target} {done}: {counts}."
    if state == DevState.ALARM:
        return f"ALARM: the last series lost frames: {losses}.\n{last}\nRun Reset to acknowledge."
    if state == DevState.OFF:
        return f"Not listening to the detector stream: run Start.\n{last}"
    return f"Waiting for a series from {', '.join(snap.upstream)}.\n{last}"


def video_image(pixels: np.ndarray, frame: int) -> bytes:
    """One 2-D image in LImA's VIDEO_IMAGE encoding; types without a LImA mode go as Y32."""
    pixels = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))
    if pixels.dtype not in VIDEO_MODES:
        pixels = np.clip(np.rint(pixels), 0, np.iinfo(np.uint32).max).astype(np.uint32)
    height, width = pixels.shape
    header = VIDEO_HEADER.pack(VIDEO_MAGIC, 1, VIDEO_MODES[pixels.dtype], frame, width, height,
                               0 if sys.byteorder == "little" else 1, VIDEO_HEADER.size, 0, 0)
    return header + pixels.tobytes()


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``: an unset property is None already."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _property_type(annotation: Any) -> Any:
    """The Tango type of a ReceiverConfig field: lists are arrays, the rest scalars; paths,
    endpoints and the rows of a list of lists ('1,2,3,4') travel as strings."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) is list:
        inner = typing.get_args(annotation)[0]
        return (inner,) if inner in (int, float) else (str,)
    return annotation if annotation in (bool, int, float) else str


def _is_rows(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return (typing.get_origin(annotation) is list
            and typing.get_origin(typing.get_args(annotation)[0]) is list)


#: Device properties named like the fields of a detectors.yaml entry (``detector_class`` is the
#: yaml ``class``), derived from ReceiverConfig so that a new key is a property without anyone
#: remembering it. A property set in the database overrides the config_file entry.
ENTRY_PROPERTIES = {key: field for key, field in ReceiverConfig.model_fields.items()
                    if key != "name"}
ROW_PROPERTIES = {key for key, field in ENTRY_PROPERTIES.items() if _is_rows(field.annotation)}
EntryProperties = type("EntryProperties", (Device,), {
    key: device_property(dtype=_property_type(field.annotation),
                         doc=f"detectors.yaml key {field.alias or key!r} (overrides config_file)")
    for key, field in ENTRY_PROPERTIES.items()})


def _snapshot_attribute(field: str, **kwargs: Any) -> attribute:
    return attribute(fget=lambda self: getattr(self.snap, field), **kwargs)


#: something the serving process runs beside each receiver the device starts (the REST
#: sidecar, see tango/server.py): given the receiver, it returns how to stop it again
Companion = Callable[[Receiver], Callable[[], None]]


class ReceiverDevice(EntryProperties, RoiAttributes):
    """A detector data receiver: ZMQ detector stream -> HDF5, secondary port and live view."""

    #: set by the process that serves the device; the device itself knows no REST
    companions: ClassVar[list[Companion]] = []

    # --- properties: the detectors.yaml entry --------------------------------------------
    config_file = device_property(dtype=str, doc="detectors.yaml to take the entry from "
                                                  "(optional: properties alone may configure)")
    receiver_name = device_property(dtype=str, doc="entry name in config_file (default: the "
                                                    "device name's member)")

    # --- attributes, all from one snapshot -----------------------------------------------
    filename = _snapshot_attribute("filename", dtype=str, doc="file of the current or last series")
    series_id = _snapshot_attribute("series_id", dtype=str)
    series_count = _snapshot_attribute("series_count", dtype=int)
    frames_received = _snapshot_attribute("frames_received", dtype=int, unit="frames")
    frames_written = _snapshot_attribute("frames_written", dtype=int, unit="frames")
    frames_forwarded = _snapshot_attribute("frames_forwarded", dtype=int, unit="frames")
    frames_missing = _snapshot_attribute("frames_missing", dtype=int, unit="frames")
    frames_invalid = _snapshot_attribute("frames_invalid", dtype=int, unit="frames")
    frames_discarded = _snapshot_attribute("frames_discarded", dtype=int, unit="frames")
    forward_dropped = _snapshot_attribute("forward_dropped", dtype=int, unit="frames")
    forward_no_consumer = _snapshot_attribute("forward_no_consumer", dtype=int, unit="frames")
    last_frame_number = _snapshot_attribute("last_frame_number", dtype=int)
    frame_rate = _snapshot_attribute("frame_rate", dtype=float, unit="frames/s", format="%.1f")
    data_rate = _snapshot_attribute("data_rate", dtype=float, unit="B/s", format="%.3e")
    compression_ratio = _snapshot_attribute("compression_ratio", dtype=float, format="%.2f")
    secondary_port = _snapshot_attribute("secondary_port", dtype=int)
    detector_class_attr = _snapshot_attribute("detector_class", name="detector_class", dtype=str)
    upstream_attr = attribute(name="upstream", dtype=(str,), max_dim_x=64,
                              fget=lambda self: list(self.snap.upstream))
    messages = attribute(dtype=(str,), max_dim_x=64, doc="recent warnings and errors, newest last",
                         fget=lambda self: list(self.snap.messages))
    rest_url = _snapshot_attribute("rest_url", dtype=str,
                                   doc="the REST sidecar beside this device ('' if not running)")

    # --- life cycle ----------------------------------------------------------------------
    def init_device(self) -> None:
        super().init_device()
        self._receiver: Receiver | None = None
        self._config_error = ""
        self._snap: StatsSnapshot | None = None
        self._stop_events = threading.Event()
        self._pusher: threading.Thread | None = None
        self._companions_stop: list[Callable[[], None]] = []
        for name in COUNTERS + GAUGES:
            self.set_change_event(name, True, False)
        for name in COUNTERS:
            self.set_archive_event(name, True, False)
        self.set_change_event("State", True, False)
        self.set_data_ready_event("last_image", True)
        self.init_roi_events()
        try:
            config = self.receiver_config()
            receiver = Receiver(config)
        except (ConfigError, ValueError) as exc:
            self._fail_init(f"receiver not started: {exc}")
            return
        try:
            receiver.start()
            failed = ""
        except zmq.ZMQError as exc:  # the secondary port cannot be bound
            failed = (f"receiver {config.name} not started: secondary port "
                      f"{config.data_host}:{config.data_port}: {exc}")
        if failed:  # closed once the exception (and the socket its traceback holds) is gone
            receiver.close()
            self._fail_init(failed)
            return
        self._receiver = receiver
        self._companions_stop = [start(receiver) for start in self.companions]
        self._pusher = threading.Thread(target=self._push_events, daemon=True,
                                        name=f"{config.name}-tango-events")
        self._pusher.start()
        log.info("%s: receiver %s (%s) started", self.get_name(), config.name,
                 config.detector_class)

    def _fail_init(self, text: str) -> None:
        self._config_error = f"{self.get_name()}: {text}"
        log.error("%s", self._config_error)

    def delete_device(self) -> None:
        self._stop_events.set()
        if self._pusher is not None:
            # The pusher may wait for the device monitor that this Tango thread holds.
            with tango.AutoTangoAllowThreads(self):
                self._pusher.join(5)
        for stop in self._companions_stop:
            stop()
        self._companions_stop = []
        if self._receiver is not None:
            self._receiver.close()  # writes out what was received, closes the file cleanly
        self._receiver = self._pusher = None

    def receiver_config(self) -> ReceiverConfig:
        """The detectors.yaml entry from ``config_file`` (if any), overridden by the properties
        set in the database; errors name the file or the device."""
        name = self.receiver_name or self.get_name().rsplit("/", 1)[-1]
        entry: dict[str, Any] = {}
        sources = []
        if self.config_file:
            entry = load_receiver(self.config_file, name).model_dump(exclude={"name"},
                                                                     exclude_unset=True)
            sources.append(self.config_file)
        overrides = {key: getattr(self, key) for key in ENTRY_PROPERTIES
                     if getattr(self, key) is not None}
        for key in ROW_PROPERTIES & overrides.keys():
            overrides[key] = [self._row(key, row) for row in overrides[key]]
        if overrides:
            sources.append(f"Tango properties of {self.get_name()}")
        return parse_entry(name, entry | overrides, " + ".join(sources) or self.get_name())

    def _row(self, key: str, row: str) -> list[int]:
        try:
            return [int(v) for v in row.replace(",", " ").split()]
        except ValueError:
            raise ConfigError(f"Tango properties of {self.get_name()}: key {key!r}: row {row!r} "
                              f"is not a list of integers such as '1,2,3,4'") from None

    @property
    def receiver(self) -> Receiver:
        if self._receiver is None:
            raise RuntimeError(self._config_error + " (fix the properties, then run Init)")
        return self._receiver

    @property
    def snap(self) -> StatsSnapshot:
        """The snapshot of the current client request (taken once in read_attr_hardware)."""
        return self._snap if self._snap is not None else self.receiver.snapshot()

    def read_attr_hardware(self, attr_list: list[int]) -> None:
        self._snap = self.receiver.snapshot() if self._receiver is not None else None

    # --- state ---------------------------------------------------------------------------
    def dev_state(self) -> DevState:
        if self._receiver is None:
            return DevState.FAULT
        return state_of(self._receiver.snapshot())

    def dev_status(self) -> str:
        if self._receiver is None:
            return f"FAULT: {self._config_error}\nFix the properties, then run Init."
        snap = self._receiver.snapshot()
        return status_of(snap, state_of(snap)) + roi_status(snap)

    # --- read/write attributes -----------------------------------------------------------
    @attribute(dtype=int, access=AttrWriteType.READ_WRITE, min_value=DOWNSAMPLE_MIN,
               max_value=DOWNSAMPLE_MAX,
               doc="live-view binning: last_image is the mean of N x N pixel blocks")
    def downsample(self) -> int:
        return self.receiver.downsample

    @downsample.write
    def downsample(self, value: int) -> None:
        self.receiver.downsample = value

    @attribute(dtype=bool, access=AttrWriteType.READ_WRITE,
               doc="write HDF5 files (takes effect at the next series)")
    def save_enabled(self) -> bool:
        return self.receiver.save_enabled

    @save_enabled.write
    def save_enabled(self, value: bool) -> None:
        self.receiver.save_enabled = bool(value)

    # --- live view -----------------------------------------------------------------------
    @attribute(dtype=((float,),), max_dim_x=MAX_IMAGE_DIM, max_dim_y=MAX_IMAGE_DIM,
               doc="latest frame (first channel), binned by downsample; exact at downsample 1")
    def last_image(self) -> Any:
        view = self.receiver.liveview.view(self.receiver.downsample)
        if view is None:
            return np.zeros((0, 0)), time.time(), AttrQuality.ATTR_INVALID
        return view[1][0].astype(np.float64, copy=False)

    @attribute(dtype=tango.DevEncoded, doc="latest frame as LImA VIDEO_IMAGE (Taurus live view); "
                                           "binned frames carry block sums, so sparse counts "
                                           "survive the integer encoding")
    def video_last_image(self) -> Any:
        factor = self.receiver.downsample
        view = self.receiver.liveview.view(factor)
        if view is None:
            return ("VIDEO_IMAGE", b""), time.time(), AttrQuality.ATTR_INVALID
        live, (pixels, *_) = view
        if factor > 1:
            pixels = pixels * np.float32(factor * factor)
        return "VIDEO_IMAGE", video_image(pixels, live.frame)

    # --- commands ------------------------------------------------------------------------
    @command
    def Start(self) -> None:
        """Connect to the detector stream."""
        self.receiver.start()

    @command
    def Stop(self) -> None:
        """Disconnect from the detector stream; an open series stays open."""
        self.receiver.stop()

    @command
    def Abort(self) -> None:
        """Close the file now; the rest of the current series is counted as discarded."""
        self.receiver.abort()

    @command
    def Reset(self) -> None:
        """Leave FAULT once its cause is gone; acknowledge the losses that raised ALARM."""
        self.receiver.reset()

    # --- events --------------------------------------------------------------------------
    def _push_events(self) -> None:
        with tango.EnsureOmniThread():
            last: dict[str, Any] = {}
            live_seen = None
            ready = 0
            failing = ""
            while not self._stop_events.wait(EVENT_PERIOD_S):
                try:
                    snap = self.receiver.snapshot()
                    live = self.receiver.liveview.latest()
                    self._push_changes(snap, last)
                    self.push_roi_changes(last)
                    if live is not None and live is not live_seen:
                        live_seen, ready = live, ready + 1
                        self.push_data_ready_event("last_image", ready)
                    failing = ""
                except Exception as exc:  # an event lost must not stop the next ones
                    if repr(exc) != failing:  # once per cause, not 10 times a second
                        failing = repr(exc)
                        log.exception("%s: pushing events failed", self.get_name())

    def _push_changes(self, snap: StatsSnapshot, last: dict[str, Any]) -> None:
        state = state_of(snap)
        if last.get("State") != state:
            last["State"] = state
            self.set_state(state)  # Tango pushes the stored state, whatever value is passed
            self.push_change_event("State")
        for name in COUNTERS + GAUGES:
            value = getattr(snap, name)
            if last.get(name) != value:
                last[name] = value
                self.push_change_event(name, value)
                if name in COUNTERS:
                    self.push_archive_event(name, value)
