"""A real Tango database server process and a real device server process, watched by a plain
DeviceProxy, by events and by Taurus, while a simulated detector streams a series."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import tango
import taurus
import yaml
from tango import DevState, EventType
from test_tango_device import decode_video, entry, secondary_consumer, send_watching_states

from conftest import wait_for
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.tango.database import DatabaseServer
from tango_receiver.tango.server_process import ServerProcess
from tango_servers import Events, registered_server

NAME = "stins-int"


@pytest.fixture
def database(tmp_path) -> Iterator[DatabaseServer]:
    with DatabaseServer(tmp_path / "tango-db") as db:
        yield db


@pytest.fixture
def device_server(tmp_path, sender, database) -> Iterator[tuple[tango.DeviceProxy, str]]:
    """The receiver's device server, registered in the database, as its own process."""
    with registered_server(
        tmp_path, database, NAME, entry(sender, tmp_path), {"video_image": True}
    ) as served:
        yield served


def test_series_seen_by_proxy_events_and_taurus(tmp_path, sender, device_server):
    proxy, url = device_server
    frames = synthetic_frames(4, (48, 40), "uint16", rate=3.0)
    target = tmp_path / "scan_int.h5"
    subscriptions = {
        ("State", EventType.CHANGE_EVENT): Events(),
        ("frames_received", EventType.CHANGE_EVENT): Events(),
        ("frames_received", EventType.ARCHIVE_EVENT): Events(),
        ("last_image", EventType.DATA_READY_EVENT): Events(),
    }
    ids = [proxy.subscribe_event(attr, kind, cb) for (attr, kind), cb in subscriptions.items()]
    state_events, received_events, archive_events, ready_events = subscriptions.values()
    try:
        with secondary_consumer(proxy.secondary_port):
            start = time.monotonic()
            states = send_watching_states(
                proxy, sender, internal_series(frames, str(target), count=30), 30, 30
            )
            wait_for(
                lambda: (
                    state_events.values[-1] == DevState.ON
                    and received_events.values[-1] == 30
                    and archive_events.values[-1] == 30
                ),
                10,
                "the last events of the series",
            )
            elapsed = time.monotonic() - start
    finally:
        for event_id in ids:
            proxy.unsubscribe_event(event_id)

    assert states == [DevState.ON, DevState.RUNNING, DevState.ON]
    # the first event of each subscription is the value at subscription time
    pushed = state_events.values
    assert [s for i, s in enumerate(pushed) if i == 0 or s != pushed[i - 1]] == states
    assert received_events.values[0] == 0 and received_events.values == sorted(
        received_events.values
    )
    assert len(received_events.values) <= elapsed / 0.1 + 3, "change events above 10 Hz"
    assert len(received_events.values) < 30, "one change event per frame: not throttled"
    assert ready_events.values and all(isinstance(c, int) for c in ready_events.values)
    assert not any(cb.errors for cb in subscriptions.values())

    values = {
        a.name: a.value
        for a in proxy.read_attributes(
            [
                "frames_received",
                "frames_written",
                "frames_forwarded",
                "frames_missing",
                "forward_dropped",
                "last_frame_number",
                "filename",
            ]
        )
    }
    assert values == {
        "frames_received": 30,
        "frames_written": 30,
        "frames_forwarded": 30,
        "frames_missing": 0,
        "forward_dropped": 0,
        "last_frame_number": 29,
        "filename": str(target),
    }
    last = frames[29 % 4]
    assert np.array_equal(proxy.last_image, last)

    written = taurus.Attribute(f"{url}/frames_written").read(cache=False)
    assert int(written.rvalue.magnitude) == 30
    assert taurus.Attribute(f"{url}/filename").read(cache=False).rvalue == str(target)
    video = taurus.Attribute(f"{url}/video_last_image").read(cache=False).rvalue
    _, decoded = decode_video(tuple(video))
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, last)
    with h5py.File(target, "r") as f:
        assert f["/entry/data/data"].shape == (30, 48, 40)


def test_nodb_server_takes_its_entry_from_detectors_yaml(tmp_path, sender):
    config_path = tmp_path / "detectors.yaml"
    config_path.write_text(yaml.safe_dump({NAME: entry(sender, tmp_path)}))
    with socket.socket() as probe:  # a free port, released for the server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ServerProcess(config_path, NAME, tmp_path / "server.log", nodb_port=port)
    try:
        proxy = server.start()
        wait_for(lambda: proxy.state() == DevState.ON, 10, f"{server.url} ON")
        assert list(proxy.upstream) == [f"tcp://127.0.0.1:{sender.port}"]
        assert "#dbase=no" in server.url
    finally:
        assert server.stop() == 0, server.log_path.read_text()
