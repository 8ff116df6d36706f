"""A receiver's device server registered in a real Tango database (pytango-db), for the tests
that need one: Taurus cannot address a ``#dbase=no`` device; and the events a test subscribes
to, kept as they come."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import tango
import yaml
from tango import DevState

from conftest import wait_for
from tango_receiver.config import load_receiver
from tango_receiver.sim.sender import Sender
from tango_receiver.tango.database import DatabaseServer
from tango_receiver.tango.registration import device_name, register_device, server_instance
from tango_receiver.tango.server_process import ServerProcess


def entry(sender: Sender, root: Path) -> dict:
    """A detectors.yaml entry for the internal format, every port free and on 127.0.0.1."""
    return {
        "class": "Detector",
        "upstream": [f"tcp://127.0.0.1:{sender.port}"],
        "data_host": "127.0.0.1",
        "data_port": 0,
        "api_host": "127.0.0.1",
        "api_port": 0,
        "write_roots": [str(root)],
        "gap_timeout_s": 0.5,
    }


@contextmanager
def registered_server(
    directory: Path,
    database: DatabaseServer,
    name: str,
    entry: dict,
    properties: dict | None = None,
) -> Iterator[tuple[tango.DeviceProxy, str]]:
    """The device server of the detectors.yaml ``entry`` as its own process, registered in
    ``database`` with ``properties`` besides its entry's; its proxy (ON) and Tango URL. It must
    exit 0 when stopped."""
    config_path = directory / "detectors.yaml"
    config_path.write_text(yaml.safe_dump({name: entry}))
    dev = device_name(load_receiver(config_path, name))
    register_device(
        database.database(),
        server_instance(name),
        dev,
        {"config_file": config_path, "receiver_name": name} | (properties or {}),
    )
    server = ServerProcess(
        config_path, name, directory / "server.log", tango_host=database.tango_host
    )
    try:
        proxy = server.start()
        proxy.set_timeout_millis(10000)
        wait_for(lambda: proxy.state() == DevState.ON, 10, f"{server.url} ON")
        yield proxy, server.url
    finally:
        code = server.stop()
    assert code == 0, f"device server exit code {code}: {server.log_path.read_text()}"


class Events:
    """Events of one subscription, kept in arrival order with their arrival time."""

    def __init__(self) -> None:
        self.items: list[tuple[float, object]] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: tango.EventData) -> None:
        with self._lock:
            if event.err:
                self.errors.append(str(event.errors[0].desc))
            elif event.event == "data_ready":
                self.items.append((time.monotonic(), event.ctr))
            else:
                self.items.append((time.monotonic(), event.attr_value.value))

    @property
    def values(self) -> list:
        with self._lock:
            return [value for _, value in self.items]
