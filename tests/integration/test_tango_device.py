"""The Tango device over a real receiver: DeviceTestContext in its own process, real sockets,
real files. A fresh server process per test, because a Tango server runs once per process."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import tango
import yaml
import zmq
from tango import AttrQuality, DevState
from tango.test_context import DeviceTestContext
from taurus.core.util.codecs import CodecFactory

from conftest import wait_for
from tango_receiver.codecs.downsample import block_mean
from tango_receiver.config import ReceiverConfig
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender
from tango_receiver.tango.device import ReceiverDevice
from tango_servers import entry

DEVICE = "tango_receiver/detector/test-stins"
COUNTERS = [
    "frames_received",
    "frames_written",
    "frames_forwarded",
    "frames_missing",
    "frames_invalid",
    "forward_dropped",
    "frames_discarded",
    "last_frame_number",
    "series_count",
]


@contextmanager
def device(properties: dict) -> Iterator[tango.DeviceProxy]:
    with DeviceTestContext(
        ReceiverDevice, device_name=DEVICE, properties=properties, process=True, timeout=30
    ) as proxy:
        proxy.set_timeout_millis(10000)
        yield proxy


@contextmanager
def secondary_consumer(port: int) -> Iterator[zmq.Socket]:
    """A PULL client on the secondary port, handshaken before the series starts: the receiver
    counts frames nobody can take as dropped, which would raise ALARM."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        assert monitor.poll(10000), f"no handshake with the secondary port {port} in 10 s"
        yield sock
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()


def send_in_background(sender: Sender, messages, rate: float | None = None) -> threading.Thread:
    thread = threading.Thread(
        target=sender.send, args=(list(messages),), kwargs={"rate": rate}, daemon=True
    )
    thread.start()
    return thread


def send_watching_states(
    proxy: tango.DeviceProxy,
    sender: Sender,
    messages,
    rate: float,
    frames: int,
    timeout: float = 20.0,
) -> list[DevState]:
    """Stream a series; the distinct states seen from before it until it is received whole and
    the device is idle again."""
    seen: list[DevState] = [proxy.state()]
    thread = send_in_background(sender, messages, rate)

    def done() -> bool:
        state = proxy.state()
        if state != seen[-1]:
            seen.append(state)
        return not thread.is_alive() and state == DevState.ON and proxy.frames_received == frames

    wait_for(done, timeout, f"{frames} frames received and state ON")
    return seen


def counters(proxy: tango.DeviceProxy) -> dict[str, int]:
    return {a.name: a.value for a in proxy.read_attributes(COUNTERS)}


def decode_video(value: tuple[str, bytes]) -> tuple[tuple, np.ndarray]:
    fmt, data = value
    assert fmt == "VIDEO_IMAGE"
    header = struct.unpack("!IHHqiiHHHH", data[:32])
    return header, CodecFactory().decode((fmt, data))


def test_every_detectors_yaml_key_is_a_device_property():
    declared = ReceiverDevice.TangoClassClass.device_property_list
    keys = set(ReceiverConfig.model_fields) - {"name"}
    assert set(declared) == keys | {"config_file", "receiver_name", "video_image"}
    types = {key: declared[key][0] for key in declared}
    assert types["upstream"] == types["write_roots"] == types["mask"] == tango.DevVarStringArray
    assert types["shape"] == tango.DevVarLong64Array
    assert types["data_port"] == tango.DevLong64 and types["compress"] == tango.DevBoolean
    assert types["gap_timeout_s"] == tango.DevDouble and types["tot"] == tango.DevString


def test_series_drives_state_counters_and_live_view(tmp_path, sender):
    config = tmp_path / "detectors.yaml"
    config.write_text(yaml.safe_dump({"stins-test": entry(sender, tmp_path)}))
    frames = synthetic_frames(5, (64, 80), "uint32", rate=3.0)
    target = tmp_path / "scan_001.h5"
    with device(
        {"config_file": str(config), "receiver_name": "stins-test", "video_image": True}
    ) as proxy:
        assert proxy.state() == DevState.ON
        assert "Waiting for a series" in proxy.status()
        assert proxy.read_attribute("last_image").quality == AttrQuality.ATTR_INVALID
        assert proxy.detector_class == "Detector"
        assert list(proxy.upstream) == [f"tcp://127.0.0.1:{sender.port}"]
        with secondary_consumer(proxy.secondary_port):
            states = send_watching_states(
                proxy, sender, internal_series(frames, str(target), count=20), 40, 20
            )
        assert states == [DevState.ON, DevState.RUNNING, DevState.ON]
        assert counters(proxy) == {
            "frames_received": 20,
            "frames_written": 20,
            "frames_forwarded": 20,
            "frames_missing": 0,
            "frames_invalid": 0,
            "forward_dropped": 0,
            "frames_discarded": 0,
            "last_frame_number": 19,
            "series_count": 1,
        }
        assert proxy.filename == str(target)
        assert str(target) in proxy.status() and "20 frames received" in proxy.status()

        last = frames[19 % 5]
        image = proxy.last_image
        assert image.dtype == np.float64 and np.array_equal(image, last)  # the entry has no dtype
        header, decoded = decode_video(proxy.video_last_image)
        assert header[:6] == (0x5644454F, 1, 2, 19, 80, 64)  # VDEO, v1, Y32, frame, w, h
        assert decoded.dtype == np.uint32 and np.array_equal(decoded, last)

        proxy.downsample = 4
        assert proxy.downsample == 4
        assert np.allclose(proxy.last_image, block_mean(last, 4))
        _, binned = decode_video(proxy.video_last_image)
        assert np.array_equal(binned, last.reshape(16, 4, 20, 4).sum(axis=(1, 3)))
        with pytest.raises(tango.DevFailed):
            proxy.downsample = 65

        proxy.Init()  # a new receiver from the same properties: the last series is kept
        assert proxy.state() == DevState.ON and proxy.series_count == 1
        assert proxy.filename == str(target) and str(target) in proxy.status()
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (20, 64, 80)
        assert all(np.array_equal(data[i], frames[i % 5]) for i in range(20))


def test_refused_files_fault_then_reset_and_next_series_is_whole(tmp_path, sender):
    blocker = tmp_path / "blocker"  # a write root that is a plain file: nothing can go under it
    blocker.write_text("not a directory")
    # configured from Tango properties alone, as a deployment without detectors.yaml would be
    properties = {
        "detector_class": "Detector",
        "upstream": [f"tcp://127.0.0.1:{sender.port}"],
        "data_host": "127.0.0.1",
        "data_port": 0,
        "api_host": "127.0.0.1",
        "api_port": 0,
        "write_roots": [str(tmp_path / "data"), str(blocker)],
        "gap_timeout_s": 0.5,
    }
    frames = synthetic_frames(3, (16, 24), "uint16", rate=2.0)
    good = tmp_path / "data" / "scan_003.h5"
    refusals = [
        (tmp_path / "elsewhere" / "scan_001.h5", "outside the write roots"),
        (blocker / "scan_002.h5", "cannot open for writing"),
    ]
    with device(properties) as proxy, secondary_consumer(proxy.secondary_port):
        for series, (refused, reason) in enumerate(refusals, start=1):
            sender.send(internal_series(frames, str(refused), count=6))
            wait_for(
                lambda n=series: (
                    proxy.state() == DevState.FAULT
                    and proxy.series_count == n
                    and proxy.frames_received == 6
                ),
                what=f"FAULT after {refused}",
            )
            status = proxy.status()
            assert str(refused) in status and reason in status
            assert proxy.frames_written == 0
            proxy.Reset()
            assert proxy.state() == DevState.ON

        sender.send(internal_series(frames, str(good), count=9))
        wait_for(
            lambda: (
                proxy.series_count == 3
                and proxy.state() == DevState.ON
                and proxy.frames_written == 9
            ),
            what="the next series written whole",
        )
        assert proxy.frames_received == 9 and proxy.frames_missing == 0
    with h5py.File(good, "r") as f:
        assert f["/entry/data/data"].shape == (9, 16, 24)
        assert f["entry"].attrs["series_complete"]


def test_abort_discards_the_rest_raises_alarm_until_reset(tmp_path, sender):
    frames = synthetic_frames(2, (16, 16), "uint16", rate=2.0)
    target = tmp_path / "aborted.h5"
    properties = entry(sender, tmp_path)
    properties["detector_class"] = properties.pop("class")
    with device(properties) as proxy, secondary_consumer(proxy.secondary_port):
        thread = send_in_background(sender, internal_series(frames, str(target), count=30), rate=30)
        wait_for(lambda: proxy.frames_received >= 5, what="5 frames before Abort")
        proxy.Abort()
        thread.join(20)
        wait_for(lambda: proxy.state() == DevState.ALARM, what="ALARM after the aborted series")
        snap = counters(proxy)
        assert snap["frames_discarded"] > 0
        assert snap["frames_received"] + snap["frames_discarded"] == 30
        assert "discarded after Abort" in proxy.status()
        proxy.Reset()
        assert proxy.state() == DevState.ON

        proxy.Stop()
        assert proxy.state() == DevState.OFF and "run Start" in proxy.status()
        proxy.Start()
        assert proxy.state() == DevState.ON

        proxy.save_enabled = False
        sender.send(internal_series(frames, str(tmp_path / "not_saved.h5"), count=4))
        wait_for(
            lambda: (
                proxy.series_count == 2
                and proxy.frames_received == 4
                and proxy.state() == DevState.ON
            ),
            what="a series with saving disabled",
        )
        assert proxy.frames_written == 0 and not (tmp_path / "not_saved.h5").exists()
    with h5py.File(target, "r") as f:
        assert f["/entry/data/data"].shape[0] == snap["frames_written"]
        assert not f["entry"].attrs["series_complete"]


@pytest.mark.parametrize("problem", ["relative write root", "secondary port taken"])
def test_receiver_that_cannot_start_faults_naming_why(tmp_path, sender, problem):
    properties = entry(sender, tmp_path)
    properties["detector_class"] = properties.pop("class")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if problem == "relative write root":
            properties["write_roots"], named = ["relative/dir"], ["write_roots", "relative/dir"]
        else:
            properties["data_port"] = port = taken.getsockname()[1]
            named = [f"secondary port 127.0.0.1:{port}", "Address already in use"]
        with device(properties) as proxy:
            assert proxy.state() == DevState.FAULT
            status = proxy.status()
            assert DEVICE in status and all(text in status for text in named), status
            with pytest.raises(tango.DevFailed, match="run Init"):
                proxy.read_attribute("frames_received")
