"""make demo: a Tango database server, the eiger-sim device server with its REST sidecar, and a
simulated EIGER streaming a series through them into HDF5.

Nothing outside this machine is needed: pytango-db serves the Tango database from a sqlite file
in the demo directory, the device is registered in it with its detectors.yaml entry and the
demo's overrides as device properties (exactly what a facility database would hold), a plain
DeviceProxy watches the counters rise while the series streams, and the REST sidecar is asked
what existing HTTP clients ask.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import tango
import zmq

from .config import load_receiver
from .sim.eiger_v1 import eiger_v1_series
from .sim.frames import synthetic_frames
from .sim.sender import Sender
from .tango.database import DatabaseServer
from .tango.registration import device_name, register_device, server_instance
from .tango.server_process import ServerProcess

log = logging.getLogger(__name__)
CONFIG = Path(__file__).resolve().parent.parent / "detectors.yaml"
NAME = "eiger-sim"
SHOWN = ["frames_received", "frames_written", "frames_forwarded", "frame_rate"]


class SecondaryConsumer:
    """Drains the secondary port while the series runs: frames nobody takes count as dropped."""

    def __init__(self, port: int) -> None:
        self.count = 0
        self._ctx = zmq.Context()
        self._socket = self._ctx.socket(zmq.PULL)
        monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._socket.connect(f"tcp://127.0.0.1:{port}")
        ready = monitor.poll(10000)
        self._socket.disable_monitor()
        monitor.close(linger=0)
        if not ready:
            self.close()
            raise TimeoutError(f"secondary port {port} did not accept a consumer in 10 s")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(100):
                self._socket.recv_multipart(copy=False)
                self.count += 1

    def close(self) -> None:
        if hasattr(self, "_thread"):
            self._stop.set()
            self._thread.join()
        self._socket.close(linger=0)
        self._ctx.term()


def run_demo(directory: Path, frames: int = 200, rate: float = 100.0) -> int:
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    filename = directory / f"eiger_tango_demo_{time.strftime('%Y%m%d_%H%M%S')}.h5"
    images = synthetic_frames(8, (1065, 1030), "uint32")
    config = load_receiver(CONFIG, NAME)
    device = device_name(config)
    with DatabaseServer(directory / "tango-db") as database, Sender(timeout_s=60) as sender:
        print(f"Tango database server (pytango-db, sqlite) at TANGO_HOST={database.tango_host}")
        register_device(database.database(), server_instance(NAME), device, {
            "config_file": CONFIG, "receiver_name": NAME,
            "upstream": [f"tcp://127.0.0.1:{sender.port}"], "data_host": "127.0.0.1",
            "data_port": 0, "api_host": "127.0.0.1", "api_port": 0,
            "write_roots": [directory]})
        print(f"registered {device} in server {server_instance(NAME)}; the simulated EIGER "
              f"streams from tcp://127.0.0.1:{sender.port}")
        server = ServerProcess(CONFIG, NAME, directory / "device-server.log",
                               tango_host=database.tango_host)
        try:
            proxy = server.start()
            proxy.set_timeout_millis(10000)
            rest = proxy.rest_url
            print(f"device server up: {server.url} (log: {server.log_path})\n"
                  f"  State {proxy.state()}: {proxy.status()}\n"
                  f"REST sidecar: {rest}/status, {rest}/received_frames, {rest}/docs\n")
            snap, consumed, events = stream(proxy, sender, images, str(filename), frames, rate)
            state, status = proxy.state(), proxy.status()
            answers = {path: get_json(rest + path) for path in ("/status", "/received_frames")}
        finally:
            code = server.stop()
    print(f"\n{server.url}: State {state}\n  {status.replace(chr(10), chr(10) + '  ')}")
    print(f"{events} change events on frames_received (at most 10/s); secondary port consumer "
          f"got {consumed} messages; device server exited with {code}")
    print("REST: " + ", ".join(f"GET {path} -> {body}" for path, body in answers.items()))
    same = check_file(filename, images, frames)
    ok = (same and snap["frames_written"] == frames and state == tango.DevState.ON and code == 0
          and answers["/received_frames"] == {"value": frames})
    return 0 if ok else 1


def stream(proxy: tango.DeviceProxy, sender: Sender, images: list[np.ndarray], filename: str,
           frames: int, rate: float) -> tuple[dict, int, int]:
    """Send one series while printing what a plain DeviceProxy reads; the final counters."""
    changes: list[int] = []

    def changed(event: tango.EventData) -> None:
        if not event.err:
            changes.append(event.attr_value.value)
    event_id = proxy.subscribe_event("frames_received", tango.EventType.CHANGE_EVENT, changed)
    consumer = SecondaryConsumer(proxy.secondary_port)
    try:
        thread = threading.Thread(target=sender.send, kwargs={"rate": rate, "messages": (
            eiger_v1_series(images, filename, count=frames))}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60 + frames / rate
        while time.monotonic() < deadline:
            state = proxy.state()
            snap = {a.name: a.value for a in proxy.read_attributes(SHOWN)}
            print(f"  State {str(state):8} received {snap['frames_received']:5} written "
                  f"{snap['frames_written']:5} forwarded {snap['frames_forwarded']:5} "
                  f"{snap['frame_rate']:6.0f} frames/s", flush=True)
            if not thread.is_alive() and state != tango.DevState.RUNNING:
                break
            time.sleep(0.25)
        thread.join(5)
        return snap, consumer.count, len(changes)
    finally:
        consumer.close()
        proxy.unsubscribe_event(event_id)


def check_file(filename: Path, images: list[np.ndarray], frames: int) -> bool:
    with h5py.File(filename, "r") as f:
        data = f["/entry/data/data"]
        same = data.shape[0] == frames and all(
            np.array_equal(data[i], images[i % len(images)]) for i in range(data.shape[0]))
        print(f"{filename}: /entry/data/data {data.shape} {data.dtype}, "
              f"series_complete={f['entry'].attrs['series_complete']}, "
              f"every frame equal to the one sent: {same}")
    return same


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
