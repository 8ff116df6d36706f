"""A real Sardana beamline against the embedded database: a Pool with a dummy motor, the
simulated detector as timer (tests/sardana_pool), the receiver's 2D channel and its ROI counter
channels; a MacroServer whose NeXus recorder resolves the 2D channel's references. ``ascan``
runs through the Door, and the scan file, read with plain h5py, must give each point exactly the
frames sent for it, and each ROI channel exactly the ROI's sum over those frames."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import tango
import yaml
from sardana_pool.DetectorSimCtrl import point_frames
from tango import DevState, EventType
from taurus.core.util.codecs import CodecFactory
from test_tango_device import entry

from conftest import wait_for
from tango_receiver.config import load_receiver
from tango_receiver.sardana import (
    CONTROLLER_CLASS,
    POOL_PATH,
    RECORDER_PATH,
    ROI_CONTROLLER_CLASS,
)
from tango_receiver.sardana.measurement import enable_references
from tango_receiver.tango.database import DatabaseServer
from tango_receiver.tango.registration import device_name, register_device, server_instance
from tango_receiver.tango.server_process import ServerProcess

NAME = "sardana-rcv"
POINTS, FRAMES, SHAPE, DTYPE = 4, 3, (24, 20), "uint16"
ROIS = {"peak": [4, 12, 3, 9], "band": [0, 24, 15, 18]}  # [row0, row1, col0, col1]
ROI_CHANNELS = {"rcv_band": "band", "rcv_peak": "peak"}  # axes 1, 2: not the order of ROIS
TEST_POOL_PATH = str(Path(__file__).parent / "sardana_pool")
POOL, MACROSERVER, DOOR = "pool/test/1", "macroserver/test/1", "door/test/1"
MACRO_TIMEOUT_S = 90


class MacroRun:
    """One macro through the Door: its log and how it ended, from the Door's events."""

    LOGS = ("Output", "Info", "Warning", "Error")

    def __init__(self, door: tango.DeviceProxy, macro: tuple[str, ...]) -> None:
        self.log: list[str] = []
        self._statuses: list[tuple[float, dict]] = []
        self._changed = threading.Condition()
        ids = [door.subscribe_event(name, EventType.CHANGE_EVENT, self._log) for name in self.LOGS]
        ids.append(door.subscribe_event("MacroStatus", EventType.CHANGE_EVENT, self._status))
        try:
            self.log.clear()  # what the subscriptions brought was an earlier macro's
            macro_id = re.search(r'\bid="([^"]+)"', door.RunMacro(list(macro))[0])[1]
            with self._changed:
                if not self._changed.wait_for(lambda: self._end(macro_id), MACRO_TIMEOUT_S):
                    door.StopMacro()
                    raise AssertionError(f"{macro} did not end in {MACRO_TIMEOUT_S} s: {self.log}")
                self.ended_at, end = self._end(macro_id)
        finally:
            for event_id in ids:
                door.unsubscribe_event(event_id)
        self.state = end["state"]
        self.log.extend(end.get("exc_stack") or [])

    def _end(self, macro_id: str) -> tuple[float, dict] | None:
        return next(
            (
                (at, status)
                for at, status in self._statuses
                if status["id"] == macro_id and status["state"] in ("finish", "stop", "exception")
            ),
            None,
        )

    def _log(self, event: tango.EventData) -> None:
        if not event.err and event.attr_value.value:
            self.log.extend(event.attr_value.value)

    def _status(self, event: tango.EventData) -> None:
        if event.err or not event.attr_value.value[1]:
            return
        fmt = event.attr_value.value[0]
        _, statuses = CodecFactory().getCodec(fmt).decode(event.attr_value.value)
        with self._changed:
            self._statuses.extend((time.monotonic(), status) for status in statuses)
            self._changed.notify_all()


@dataclass
class Beamline:
    receiver: tango.DeviceProxy
    channel: tango.DeviceProxy  # the receiver's, in the Pool
    roi_ctrl: tango.DeviceProxy  # the controller of its ROI channels
    detector_ctrl: tango.DeviceProxy
    door: tango.DeviceProxy
    data: Path
    scans: Path

    def run(self, *macro: str) -> MacroRun:
        return MacroRun(self.door, macro)


class SardanaServer:
    """A Pool or MacroServer device server process, up once its device answers."""

    def __init__(self, kind: str, tango_host: str, log_path: Path) -> None:
        self.kind, self.log_path = kind, log_path
        launch = f"import sys; from sardana.tango.{kind.lower()} import main; sys.exit(main())"
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", launch, "test"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, TANGO_HOST=tango_host),
            )

    def wait(self, device: str, timeout_s: float = 60) -> tango.DeviceProxy:
        proxy = tango.DeviceProxy(device)

        def answers() -> bool:
            assert self.process.poll() is None, f"{self.kind} exited: {self.log_path.read_text()}"
            try:
                return proxy.state() is not None
            except tango.DevFailed:
                return False

        wait_for(answers, timeout_s, f"{self.kind} {device}")
        proxy.set_timeout_millis(30000)
        return proxy

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


def add_device(db: tango.Database, server: str, klass: str, name: str, **properties) -> None:
    info = tango.DbDevInfo()
    info.name, info._class, info.server = name, klass, server
    db.add_device(info)
    if properties:
        db.put_device_property(name, properties)


def start_receiver(
    stack: ExitStack, db: DatabaseServer, tmp: Path, upstream: str, data: Path
) -> tuple[tango.DeviceProxy, str]:
    """The receiver's device server, registered in the database; its proxy and device name."""
    config_path = tmp / "detectors.yaml"
    receiver_entry = entry(SimpleNamespace(port=int(upstream.rsplit(":", 1)[1])), data)
    # ROI counting with cores to spare: no frame of a scan is skipped
    receiver_entry |= {"shape": list(SHAPE), "dtype": DTYPE, "rois": ROIS, "roi_cpu": 2.0}
    config_path.write_text(yaml.safe_dump({NAME: receiver_entry}))
    device = device_name(load_receiver(config_path, NAME))
    register_device(
        db.database(),
        server_instance(NAME),
        device,
        {"config_file": config_path, "receiver_name": NAME},
    )
    server = ServerProcess(config_path, NAME, tmp / "receiver.log", tango_host=db.tango_host)
    stack.callback(server.stop)
    return server.start(), device


@pytest.fixture(scope="module")
def beamline(tmp_path_factory) -> Iterator[Beamline]:
    tmp = tmp_path_factory.mktemp("sardana")
    data, scans = tmp / "data", tmp / "scans"
    data.mkdir()
    scans.mkdir()
    with ExitStack() as stack:
        db = stack.enter_context(DatabaseServer(tmp / "tango-db"))
        os.environ["TANGO_HOST"] = db.tango_host  # DeviceProxy by name, as at a beamline
        stack.callback(os.environ.pop, "TANGO_HOST")
        database = db.database()
        add_device(database, "Pool/test", "Pool", POOL, PoolPath=[POOL_PATH, TEST_POOL_PATH])
        add_device(
            database,
            "MacroServer/test",
            "MacroServer",
            MACROSERVER,
            PoolNames=[POOL],
            RecorderPath=[RECORDER_PATH],
            EnvironmentDb=str(tmp / "ms-env"),
        )
        add_device(database, "MacroServer/test", "Door", DOOR, MacroServerName=MACROSERVER)
        pool_server = SardanaServer("Pool", db.tango_host, tmp / "pool.log")
        stack.callback(pool_server.stop)
        pool = pool_server.wait(POOL)
        pool.CreateController(
            ["Motor", "DummyMotorController.py", "DummyMotorController", "motctrl"]
        )
        pool.CreateElement(["Motor", "motctrl", "1", "mot01"])
        # the detector binds first (a port of its own), the receiver then connects to it
        pool.CreateController(
            ["CTExpChannel", "DetectorSimCtrl.py", "DetectorSimController", "detctrl"]
        )
        pool.CreateElement(["CTExpChannel", "detctrl", "1", "det"])
        detector_ctrl = tango.DeviceProxy("detctrl")
        receiver, receiver_device = start_receiver(stack, db, tmp, detector_ctrl.Endpoint, data)
        pool.CreateController(
            [
                "TwoDExpChannel",
                "TangoReceiverCtrl.py",
                CONTROLLER_CLASS,
                "rcvctrl",
                "ReceiverDevice",
                receiver_device,
            ]
        )
        pool.CreateElement(["TwoDExpChannel", "rcvctrl", "1", "rcv"])
        pool.CreateController(
            [
                "CTExpChannel",
                "TangoReceiverRoiCtrl.py",
                ROI_CONTROLLER_CLASS,
                "roictrl",
                "ReceiverDevice",
                receiver_device,
            ]
        )
        for axis, (channel, roi) in enumerate(ROI_CHANNELS.items(), 1):
            pool.CreateElement(["CTExpChannel", "roictrl", str(axis), channel])
            tango.DeviceProxy(channel).RoiName = roi
        pool.CreateMeasurementGroup(["mg", "det", "rcv", *ROI_CHANNELS])
        enable_references("mg", "rcv", DTYPE)

        ms_server = SardanaServer("MacroServer", db.tango_host, tmp / "macroserver.log")
        stack.callback(ms_server.stop)
        line = Beamline(
            receiver,
            tango.DeviceProxy("rcv"),
            tango.DeviceProxy("roictrl"),
            detector_ctrl,
            ms_server.wait(DOOR),
            data,
            scans,
        )
        for name, value in (
            ("ActiveMntGrp", "mg"),
            ("ScanDir", str(scans)),
            ("ScanFile", "scan.h5"),
        ):
            assert line.run("senv", name, value).state == "finish"
        yield line


def recorded(scan_file: Path, channel: str) -> np.ndarray:
    """A channel's column of the last scan in the file, read with plain h5py (the receiver
    channel's: its frames, via the recorder's virtual dataset)."""
    with h5py.File(scan_file, "r") as f:
        entry_name = max(f, key=lambda name: int(name.removeprefix("entry")))
        return f[entry_name]["measurement"][channel][...]


def sent(frames: int, point: int) -> np.ndarray:
    """The frames the detector sent for ``point``."""
    return np.stack(point_frames({"frames": frames, "shape": SHAPE, "dtype": DTYPE}, point))


def start_scan(line: Beamline, series: str, frames: int, points: int = POINTS, **files) -> None:
    """The detector's scenario for the next scan, and the channels' frames per point."""
    line.channel.FramesPerPoint = frames
    line.roi_ctrl.FramesPerPoint = frames
    line.detector_ctrl.Scenario = json.dumps(
        {
            "frames": frames,
            "points": points,
            "shape": SHAPE,
            "dtype": DTYPE,
            "series": series,
            "end_delay_s": 8.0,
        }
        | files
    )


def assert_points_resolve(scan_file: Path, points: int, frames: int) -> None:
    """Each point of the last scan resolves to exactly the frames sent for it, bit for bit, and
    each ROI channel recorded the ROI's sum over exactly those frames."""
    read = recorded(scan_file, "rcv")
    assert read.shape == (points, frames, *SHAPE) and read.dtype == np.dtype(DTYPE)
    for point in range(points):
        assert np.array_equal(read[point], sent(frames, point)), f"point {point}"
    for channel, roi in ROI_CHANNELS.items():
        r0, r1, c0, c1 = ROIS[roi]
        want = [int(sent(frames, p)[:, r0:r1, c0:c1].sum()) for p in range(points)]
        assert recorded(scan_file, channel).tolist() == want, channel


@pytest.mark.timeout(300)
@pytest.mark.parametrize("series, frames", [("scan", 3), ("point", 3), ("scan", 1)])
def test_ascan_records_each_points_frames_and_roi_sums(beamline, series, frames):
    line = beamline
    done_before = line.receiver.series_done
    name = f"{series}_{frames}"
    start_scan(
        line,
        series,
        frames,
        filename=str(line.data / f"{name}.h5"),
        files=[str(line.data / f"{name}_point_{p}.h5") for p in range(POINTS)],
    )
    ran = line.run("ascan", "mot01", "0", "1", str(POINTS - 1), "0.01")
    assert ran.state == "finish", ran.log

    if series == "scan":
        # the scan waited for the last frame written, not for the series_end 8 s later
        assert line.receiver.frames_written == POINTS * frames
        assert line.receiver.series_done == done_before
    wait_for(
        lambda: line.receiver.series_done == done_before + (1 if series == "scan" else POINTS),
        30,
        "the receiver to close its files",
    )
    assert_points_resolve(line.scans / "scan.h5", POINTS, frames)
    assert (
        line.receiver.dset_name,
        tuple(line.receiver.frame_shape),
        line.receiver.frame_dtype,
    ) == ("/entry/instrument/detector/data", SHAPE, DTYPE)


@pytest.mark.timeout(300)
def test_ct_shows_the_reference_of_its_frames(beamline):
    line = beamline
    target = line.data / "ct.h5"
    start_scan(line, "point", FRAMES, points=1, files=[str(target)])
    ran = line.run("ct", "0.01")
    assert ran.state == "finish", ran.log
    said = "\n".join(ran.log)
    assert f"h5file://{target}::entry/instrument/detector/data[0:{FRAMES}]" in said, said


@pytest.mark.timeout(300)
def test_receiver_fault_ends_the_scan_with_its_reason(beamline):
    line = beamline
    refused = "/outside-the-write-roots/point_2.h5"
    files = [str(line.data / f"fault_{p}.h5") for p in range(POINTS)]
    start_scan(line, "point", FRAMES, files=files[:2] + [refused] + files[3:])
    try:
        ran = line.run("ascan", "mot01", "0", "1", str(POINTS - 1), "0.01")
        assert ran.state == "exception"
        said = "\n".join(ran.log)
        assert f"file refused: {refused}: outside the write roots" in said, said
        assert "Stopped at step #2" in said, said
        assert_points_resolve(line.scans / "scan.h5", 2, FRAMES)  # the points before the fault
    finally:
        line.receiver.Reset()
        wait_for(lambda: line.receiver.state() != DevState.FAULT, 10, "the receiver's Reset")
    # after Reset the next scan runs
    start_scan(line, "point", 1, points=2, files=[str(line.data / f"after_{p}.h5") for p in (0, 1)])
    ran = line.run("ascan", "mot01", "0", "1", "1", "0.01")
    assert ran.state == "finish", "\n".join(ran.log)
    wait_for(lambda: line.receiver.state() == DevState.ON, 10, "the last series to end")
    assert_points_resolve(line.scans / "scan.h5", 2, 1)
