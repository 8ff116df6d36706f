"""One receiver as a Tango device, so Sardana, Taurus and plain Tango clients drive it like any
other device.

The device keeps no counters of its own: every read and every event comes from one
``StatsSnapshot`` of the engine, the same source the REST sidecar reads, so a Tango client and an
HTTP client can never disagree on a frame count. A client request that reads several attributes
gets them all from one snapshot (``read_attr_hardware``), so ``frames_received`` and
``frames_written`` read together are consistent.

Events are pushed by code from one thread at most 10 times a second, whatever the frame rate:
change events on State, Status and the counters, archive events on the counters, data-ready
events on ``last_image``; change events on the two image attributes at most twice a second, and
only while somebody subscribes. GUIs subscribe instead of polling. The image attributes are binned
down to at most ``MAX_IMAGE_DIM`` pixels a side and have expert display level. A generic panel
(TaurusDevicePanel) shows every attribute whatever its level, and a DevEncoded one as text, which
for a frame takes it seconds at every update: ``video_last_image`` is there only where the
``video_image`` property asks for it.
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
from tango import AttrQuality, AttrWriteType, DevState, DispLevel
from tango.server import Device, attribute, command, device_property

from ..config import ConfigError, ReceiverConfig, load_receiver, parse_entry
from ..engine.liveview import DOWNSAMPLE_MAX, DOWNSAMPLE_MIN, LiveFrame, effective_downsample
from ..engine.receiver import Receiver
from ..engine.stats import ERROR, StatsSnapshot
from .roi_attributes import RoiAttributes, roi_status

log = logging.getLogger(__name__)

EVENT_PERIOD_S = 0.1  # change events at most 10 Hz: GUIs need no more, the engine pays nothing
IMAGE_EVENT_PERIOD_S = 0.5  # image change events at most 2 Hz: a live view, not a data path
MAX_IMAGE_DIM = 1024  # image attributes are binned coarser than downsample where a frame is bigger

#: Snapshot fields published as attributes with change events; counters get archive events too.
COUNTERS = (
    "frames_received",
    "frames_written",
    "frames_forwarded",
    "frames_missing",
    "frames_invalid",
    "forward_dropped",
    "forward_no_consumer",
    "frames_discarded",
    "last_frame_number",
    "series_count",
    "series_done",
)
GAUGES = ("frame_rate", "data_rate", "compression_ratio", "filename", "series_id")
#: Snapshot fields published in a larger unit than the engine counts in: Taurus shows a value with
#: the decimals of its format, so bytes per second read as "6863196.181 B / s".
SCALE = {"data_rate": 1e-6}  # B/s -> MB/s

# LImA's VIDEO_IMAGE, as taurus.core.util.codecs.VideoImageCodec reads it: magic 'VDEO',
# header version, image mode, frame number, width, height, endianness, header size, padding.
VIDEO_HEADER = struct.Struct("!IHHqiiHHHH")
VIDEO_MAGIC = 0x5644454F
VIDEO_MODES = {
    np.dtype(np.uint8): 0,
    np.dtype(np.uint16): 1,
    np.dtype(np.uint32): 2,
    np.dtype(np.uint64): 3,
}  # Y8, Y16, Y32, Y64
#: numpy types Tango has an image type for; the others are published as the next wider one
TANGO_IMAGE_TYPES = {
    np.dtype(t)
    for t in (
        np.uint8,
        np.int16,
        np.uint16,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float32,
        np.float64,
    )
}
WIDER: dict[np.dtype, np.dtype] = {
    np.dtype(np.int8): np.dtype(np.int16),
    np.dtype(np.float16): np.dtype(np.float32),
    np.dtype(np.bool_): np.dtype(np.uint8),
}


def state_of(snap: StatsSnapshot) -> DevState:
    """The first that holds, in README's order: FAULT (a receiver error), OFF (not listening,
    after Stop), RUNNING (a series is open), ALARM (the last series lost frames, until Reset
    acknowledges them), ON."""
    if snap.state == ERROR:
        return DevState.FAULT
    if not snap.connected:
        return DevState.OFF
    if snap.in_series:
        return DevState.RUNNING
    if snap.alarm:
        return DevState.ALARM
    return DevState.ON


def status_of(snap: StatsSnapshot, state: DevState) -> str:
    """The Status string: what the receiver does and why, for the person at the beamline."""
    target = snap.filename or "no file (forwarding only)"
    series = f"series {snap.series_id}" if snap.series_id else "series"
    counts = (
        f"{snap.frames_received} frames received, {snap.frames_written} written, "
        f"{snap.frames_forwarded} forwarded"
    )
    losses = ", ".join(
        f"{n} {what}"
        for n, what in (
            (snap.frames_missing, "missing"),
            (snap.frames_invalid, "invalid"),
            (snap.forward_dropped, "dropped on the secondary port"),
            (snap.frames_discarded, "discarded after Abort"),
        )
        if n
    )
    if state == DevState.FAULT:
        todo = "Restart the device server." if snap.fatal else "Fix the cause, then run Reset."
        return f"FAULT: {snap.error}\nLast {series} -> {target}: {counts}.\n{todo}"
    if state == DevState.RUNNING:
        problems = f"\nProblems so far: {losses}." if losses else ""
        return (
            f"Receiving {series} -> {target}: {counts}, {snap.frame_rate:.0f} frames/s, "
            f"{snap.data_rate / 1e6:.1f} MB/s.{problems}"
        )
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


def headline(snap: StatsSnapshot, state: DevState) -> str:
    """The first line of Status, short enough for one row of a Taurus form: the state and the
    frame count, or what is wrong (the status text itself starts with it then); the lines
    after it say why, with file and counters."""
    if state == DevState.FAULT:
        return ""
    if not snap.series_count:
        return f"{state}: no series yet"
    if snap.in_series:
        return f"{state}: {snap.frames_received} frames, {snap.frame_rate:.0f} Hz"
    return f"{state}: {snap.frames_received} frames in the last series"


def published(snap: StatsSnapshot, field: str) -> Any:
    """A snapshot field in the unit its attribute declares."""
    value = getattr(snap, field)
    return value * SCALE[field] if field in SCALE else value


def image_dtype(config: ReceiverConfig | None) -> np.dtype:
    """The type ``last_image`` is published in: the frames' own (float32 after a ToT
    conversion), the next wider where Tango has no such image type; float64 where the entry
    does not say."""
    if config is None or not config.dtype:
        return np.dtype(np.float64)
    dtype = np.dtype(np.float32 if config.tot else config.dtype).newbyteorder("=")
    dtype = WIDER.get(dtype, dtype)
    return dtype if dtype in TANGO_IMAGE_TYPES else np.dtype(np.float64)


def converted(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Pixels in ``dtype``; into an integer type rounded and clipped to its range (binned means,
    a frame of another type than the entry says), so that no value wraps around."""
    if pixels.dtype == dtype:
        return pixels
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(pixels), info.min, info.max).astype(dtype)
    return pixels.astype(dtype)


def image_binning(shape: tuple[int, ...], downsample: int) -> int:
    """The binning of the image attributes: ``downsample``, or coarser where the frame would
    otherwise exceed ``MAX_IMAGE_DIM`` on a side, so that no read and no event carries more
    than MAX_IMAGE_DIM^2 pixels, whatever the detector."""
    fits = max(-(-n // MAX_IMAGE_DIM) for n in shape[-2:])
    return effective_downsample(shape, max(downsample, fits))


def video_image(pixels: np.ndarray, frame: int) -> bytes:
    """One 2-D image in LImA's VIDEO_IMAGE encoding; types without a LImA mode go as Y32."""
    pixels = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))
    if pixels.dtype not in VIDEO_MODES:
        pixels = converted(pixels, np.dtype(np.uint32))
    height, width = pixels.shape
    header = VIDEO_HEADER.pack(
        VIDEO_MAGIC,
        1,
        VIDEO_MODES[pixels.dtype],
        frame,
        width,
        height,
        0 if sys.byteorder == "little" else 1,
        VIDEO_HEADER.size,
        0,
        0,
    )
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
    return (
        typing.get_origin(annotation) is list
        and typing.get_origin(typing.get_args(annotation)[0]) is list
    )


#: Device properties named like the fields of a detectors.yaml entry (``detector_class`` is the
#: yaml ``class``), derived from ReceiverConfig so that a new key is a property without anyone
#: remembering it. A property set in the database overrides the config_file entry.
ENTRY_PROPERTIES = {
    key: field for key, field in ReceiverConfig.model_fields.items() if key != "name"
}
ROW_PROPERTIES = {key for key, field in ENTRY_PROPERTIES.items() if _is_rows(field.annotation)}
EntryProperties = type(
    "EntryProperties",
    (Device,),
    {
        key: device_property(
            dtype=_property_type(field.annotation),
            doc=f"detectors.yaml key {field.alias or key!r} (overrides config_file)",
        )
        for key, field in ENTRY_PROPERTIES.items()
    },
)


def _snapshot_attribute(field: str, **kwargs: Any) -> attribute:
    return attribute(fget=lambda self: published(self.snap, field), **kwargs)


#: something the serving process runs beside each receiver the device starts (the REST
#: sidecar, see tango/server.py): given the receiver, it returns how to stop it again
Companion = Callable[[Receiver], Callable[[], None]]


class ReceiverDevice(EntryProperties, RoiAttributes):
    """A detector data receiver: ZMQ detector stream -> HDF5, secondary port and live view."""

    #: set by the process that serves the device; the device itself knows no REST
    companions: ClassVar[list[Companion]] = []

    # --- properties: the detectors.yaml entry --------------------------------------------
    config_file = device_property(
        dtype=str,
        doc="detectors.yaml to take the entry from (optional: properties alone may configure)",
    )
    receiver_name = device_property(
        dtype=str, doc="entry name in config_file (default: the device name's member)"
    )
    video_image = device_property(
        dtype=bool,
        default_value=False,
        doc="publish video_last_image (LImA VIDEO_IMAGE) for LImA "
        "clients; generic panels render it as text, for seconds",
    )

    # --- attributes, all from one snapshot -----------------------------------------------
    filename = _snapshot_attribute("filename", dtype=str, doc="file of the current or last series")
    series_id = _snapshot_attribute("series_id", dtype=str)
    series_count = _snapshot_attribute("series_count", dtype=int)
    frames_received = _snapshot_attribute("frames_received", dtype=int)
    frames_written = _snapshot_attribute("frames_written", dtype=int)
    frames_forwarded = _snapshot_attribute("frames_forwarded", dtype=int)
    frames_missing = _snapshot_attribute("frames_missing", dtype=int)
    frames_invalid = _snapshot_attribute("frames_invalid", dtype=int)
    frames_discarded = _snapshot_attribute("frames_discarded", dtype=int)
    forward_dropped = _snapshot_attribute("forward_dropped", dtype=int)
    forward_no_consumer = _snapshot_attribute("forward_no_consumer", dtype=int)
    last_frame_number = _snapshot_attribute("last_frame_number", dtype=int)
    frame_rate = _snapshot_attribute(
        "frame_rate", dtype=float, unit="Hz", format="%.1f", doc="frames per second"
    )
    data_rate = _snapshot_attribute(
        "data_rate",
        dtype=float,
        unit="MB/s",
        format="%.1f",
        doc="megabytes (10^6 bytes) per second, as they arrived",
    )
    compression_ratio = _snapshot_attribute("compression_ratio", dtype=float, format="%.2f")
    secondary_port = _snapshot_attribute("secondary_port", dtype=int)
    detector_class_attr = _snapshot_attribute("detector_class", name="detector_class", dtype=str)
    upstream_attr = attribute(
        name="upstream", dtype=(str,), max_dim_x=64, fget=lambda self: list(self.snap.upstream)
    )
    messages = attribute(
        dtype=(str,),
        max_dim_x=64,
        doc="recent warnings and errors, newest last",
        fget=lambda self: list(self.snap.messages),
    )
    rest_url = _snapshot_attribute(
        "rest_url", dtype=str, doc="the REST sidecar beside this device ('' if not running)"
    )
    series_done = _snapshot_attribute(
        "series_done",
        dtype=int,
        doc="series ended so far (change events): a client learns "
        "that a series is over without polling files",
    )

    # --- what a client needs to point into the files (a Sardana controller) --------------
    dset_name_attr = attribute(
        name="dset_name",
        dtype=str,  # the name is also a property's
        doc="HDF5 dataset of the frames in each file",
        fget=lambda self: self.receiver.config.dset_name,
    )

    @attribute(
        dtype=(int,),
        max_dim_x=8,
        doc="shape of a frame: the latest one's, else the entry's shape ([] if unknown)",
    )
    def frame_shape(self) -> list[int]:
        return list(self._frame_form()[0])

    @attribute(dtype=str, doc="type of a frame: the latest one's, else the entry's dtype")
    def frame_dtype(self) -> str:
        return self._frame_form()[1]

    def _frame_form(self) -> tuple[tuple[int, ...], str]:
        """A frame's shape and type, from the latest frame (what is stored), or from the entry
        before any frame came (a Sardana controller asks before the first scan)."""
        latest = self.receiver.liveview.latest()
        if latest is not None:
            return latest.channels[0].shape, latest.channels[0].dtype
        config = self.receiver.config
        return tuple(config.shape or ()), config.dtype or ""

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
        for name in ("State", "Status"):
            self.set_change_event(name, True, False)
        self._publish_video(bool(self.video_image))
        self.init_roi_events()
        try:
            config = self.receiver_config()
            receiver = Receiver(config)
        except (ConfigError, ValueError) as exc:
            self._publish_last_image(image_dtype(None))
            self._fail_init(f"receiver not started: {exc}")
            return
        self._publish_last_image(image_dtype(config))
        last_series: StatsSnapshot | None = getattr(self, "_last_series", None)
        if last_series is not None:
            receiver.stats.resume(last_series)
        try:
            receiver.start()
            failed = ""
        except zmq.ZMQError as exc:  # the secondary port cannot be bound
            failed = (
                f"receiver {config.name} not started: secondary port "
                f"{config.data_host}:{config.data_port}: {exc}"
            )
        if failed:  # closed once the exception (and the socket its traceback holds) is gone
            receiver.close()
            self._fail_init(failed)
            return
        self._receiver = receiver
        # what a form's write field shows before anybody writes: never 0, below the minimum
        self.get_device_attr().get_w_attr_by_name("downsample").set_write_value(receiver.downsample)
        self._companions_stop = [start(receiver) for start in self.companions]
        self._pusher = threading.Thread(
            target=self._push_events, daemon=True, name=f"{config.name}-tango-events"
        )
        self._pusher.start()
        log.info(
            "%s: receiver %s (%s) started", self.get_name(), config.name, config.detector_class
        )

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
            self._last_series = self._receiver.snapshot()  # for the receiver Init starts next
        self._receiver = self._pusher = None

    def _publish_last_image(self, dtype: np.dtype) -> None:
        """(Re)create ``last_image`` as an image of ``dtype``: a Tango attribute's type is
        fixed, and the frames' type comes with the entry, which an Init may change."""
        published_as = getattr(self, "_image_dtype", None)  # kept from before an Init
        if published_as is not None:
            if published_as == dtype:
                return
            self.remove_attribute("last_image")
        self._image_dtype = dtype
        self.add_attribute(
            attribute(
                name="last_image",
                dtype=((dtype.type,),),
                max_dim_x=MAX_IMAGE_DIM,
                max_dim_y=MAX_IMAGE_DIM,
                display_level=DispLevel.EXPERT,
                fget=ReceiverDevice._read_last_image,
                doc=f"latest frame (first channel) as {dtype.name}, binned by downsample (block "
                f"means, rounded for integers) or coarser, to fit {MAX_IMAGE_DIM} pixels a side",
            )
        )
        self.set_change_event("last_image", True, False)
        self.set_data_ready_event("last_image", True)

    def _publish_video(self, wanted: bool) -> None:
        """Create or remove ``video_last_image`` as the ``video_image`` property says."""
        published = getattr(self, "_video_published", False)  # kept from before an Init
        self._video_published = wanted
        if wanted == published:
            return
        if published:
            self.remove_attribute("video_last_image")
            return
        self.add_attribute(
            attribute(
                name="video_last_image",
                dtype=tango.DevEncoded,
                display_level=DispLevel.EXPERT,
                fget=ReceiverDevice._read_video,
                doc="latest frame as LImA VIDEO_IMAGE, binned as last_image; binned frames carry "
                "block sums, so sparse counts survive the integer encoding",
            )
        )
        self.set_change_event("video_last_image", True, False)

    def receiver_config(self) -> ReceiverConfig:
        """The detectors.yaml entry from ``config_file`` (if any), overridden by the properties
        set in the database; errors name the file or the device."""
        name = self.receiver_name or self.get_name().rsplit("/", 1)[-1]
        entry: dict[str, Any] = {}
        sources = []
        if self.config_file:
            entry = load_receiver(self.config_file, name).model_dump(
                exclude={"name"}, exclude_unset=True
            )
            sources.append(self.config_file)
        overrides = {
            key: getattr(self, key) for key in ENTRY_PROPERTIES if getattr(self, key) is not None
        }
        for key in ROW_PROPERTIES & overrides.keys():
            overrides[key] = [self._row(key, row) for row in overrides[key]]
        if overrides:
            sources.append(f"Tango properties of {self.get_name()}")
        return parse_entry(name, entry | overrides, " + ".join(sources) or self.get_name())

    def _row(self, key: str, row: str) -> list[int]:
        try:
            return [int(v) for v in row.replace(",", " ").split()]
        except ValueError:
            raise ConfigError(
                f"Tango properties of {self.get_name()}: key {key!r}: row {row!r} "
                f"is not a list of integers such as '1,2,3,4'"
            ) from None

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
        receiver = self._receiver
        self._snap = receiver.snapshot() if receiver is not None else None
        self.read_roi_series(receiver)  # after the snapshot (see there)

    # --- state ---------------------------------------------------------------------------
    def dev_state(self) -> DevState:
        if self._receiver is None:
            return DevState.FAULT
        return state_of(self._receiver.snapshot())

    def dev_status(self) -> str:
        if self._receiver is None:
            return (
                f"FAULT: receiver not started\n{self._config_error}\n"
                f"Fix the properties, then run Init."
            )
        return self._status(self._receiver.snapshot())

    @staticmethod
    def _status(snap: StatsSnapshot) -> str:
        state = state_of(snap)
        line = headline(snap, state)
        text = status_of(snap, state) + roi_status(snap)
        return f"{line}\n{text}" if line else text

    # --- read/write attributes -----------------------------------------------------------
    @attribute(
        dtype=int,
        access=AttrWriteType.READ_WRITE,
        min_value=DOWNSAMPLE_MIN,
        max_value=DOWNSAMPLE_MAX,
        doc="live-view binning: last_image is the mean of N x N pixel blocks",
    )
    def downsample(self) -> int:
        return self.receiver.downsample

    @downsample.write
    def downsample(self, value: int) -> None:
        self.receiver.downsample = value

    @attribute(
        dtype=bool,
        access=AttrWriteType.READ_WRITE,
        doc="write HDF5 files (takes effect at the next series)",
    )
    def save_enabled(self) -> bool:
        return self.receiver.save_enabled

    @save_enabled.write
    def save_enabled(self, value: bool) -> None:
        self.receiver.save_enabled = bool(value)

    # --- live view -----------------------------------------------------------------------
    def _live_image(self) -> tuple[LiveFrame, np.ndarray, int] | None:
        """A recent frame's first plane at the image attributes' binning, and that binning."""
        latest = self.receiver.liveview.latest()
        if latest is None:
            return None
        factor = image_binning(latest.channels[0].shape, self.receiver.downsample)
        view = self.receiver.liveview.view(factor)
        return None if view is None else (view[0], view[1][0], factor)

    def _read_last_image(self, attr: tango.Attribute) -> Any:
        live = self._live_image()
        if live is None:
            return np.zeros((0, 0), self._image_dtype), time.time(), AttrQuality.ATTR_INVALID
        return converted(live[1], self._image_dtype)

    @staticmethod
    def _video(frame: LiveFrame, pixels: np.ndarray, factor: int) -> tuple[str, bytes]:
        if factor > 1:
            pixels = pixels * np.float32(factor * factor)
        return "VIDEO_IMAGE", video_image(pixels, frame.frame)

    def _read_video(self, attr: tango.Attribute) -> Any:
        live = self._live_image()
        if live is None:
            return ("VIDEO_IMAGE", b""), time.time(), AttrQuality.ATTR_INVALID
        return self._video(*live)

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
            live_seen = images_pushed = None
            images_due = 0.0
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
                    if (
                        live is not None
                        and live is not images_pushed
                        and time.monotonic() >= images_due
                    ):
                        images_due = time.monotonic() + IMAGE_EVENT_PERIOD_S
                        images_pushed = self._push_images() or images_pushed
                    failing = ""
                except Exception as exc:  # an event lost must not stop the next ones
                    if repr(exc) != failing:  # once per cause, not 10 times a second
                        failing = repr(exc)
                        log.exception("%s: pushing events failed", self.get_name())

    def _push_images(self) -> LiveFrame | None:
        """Change events of the image attributes, for their subscribers only (nobody else's
        frame is decoded); the frame pushed, which may be older than the newest."""
        published = ["last_image"] + (["video_last_image"] if self._video_published else [])
        wanted = [
            name
            for name in published
            if self.is_there_subscriber(name, tango.EventType.CHANGE_EVENT)
        ]
        live = self._live_image() if wanted else None
        if live is None:
            return None
        if "last_image" in wanted:
            self.push_change_event("last_image", converted(live[1], self._image_dtype))
        if "video_last_image" in wanted:
            self.push_change_event("video_last_image", *self._video(*live))
        return live[0]

    def _push_changes(self, snap: StatsSnapshot, last: dict[str, Any]) -> None:
        state = state_of(snap)
        if last.get("State") != state:
            last["State"] = state
            self.set_state(state)  # Tango pushes the stored state, whatever value is passed
            self.push_change_event("State")
        status = self._status(snap)
        if last.get("Status") != status:
            last["Status"] = status
            self.set_status(status)
            self.push_change_event("Status")
        for name in COUNTERS + GAUGES:
            value = published(snap, name)
            if last.get(name) != value:
                last[name] = value
                self.push_change_event(name, value)
                if name in COUNTERS:
                    self.push_archive_event(name, value)
