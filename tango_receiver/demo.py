"""make demo: a Tango database server, the eiger-sim device server with its REST sidecar, and a
simulated EIGER streaming a series through them into HDF5.

Nothing outside this machine is needed: pytango-db serves the Tango database from a sqlite file
in the demo directory, the device is registered in it with its detectors.yaml entry and the
demo's overrides as device properties (exactly what a facility database would hold), a plain
DeviceProxy watches the counters rise while the series streams, and the REST sidecar is asked
what existing HTTP clients ask.

Each run replaces the previous run's files (one series is tens of MB) and keeps the database.
With ``--keep-running`` everything stays up after the report, with a slow stream to watch,
until Ctrl-C: a demo that tears itself down leaves nothing to explore with Taurus or a browser.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
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
DEMO_FILE = "eiger_tango_demo.h5"  # the checked series; the pattern below finds older names too
PREVIOUS = "eiger_tango_*.h5"
LIVE_FILE = "eiger_tango_live.h5"  # --keep-running: the slow stream's current series
LIVE_FRAMES, LIVE_RATE, LIVE_PAUSE_S = 100, 5.0, 2.0
#: blocks until Ctrl-C, logging ``status()`` every so many seconds (cli.wait_for_signal)
Hold = Callable[[float, Callable[[], str]], object]


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


class SlowStream:
    """Series after series of the simulated EIGER at a few frames a second, until stopped, each
    into the same file (the previous one removed first, so the directory does not grow).

    Sends never block: a receiver told to ``Stop`` takes nothing, and Ctrl-C must not wait for
    it."""

    def __init__(self, sender: Sender, images: list[np.ndarray], filename: Path) -> None:
        self._sender, self._images, self._filename = sender, images, filename
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._filename.unlink(missing_ok=True)
            for parts in eiger_v1_series(self._images, str(self._filename), count=LIVE_FRAMES):
                if not self._send(parts) or self._stop.wait(1.0 / LIVE_RATE):
                    return
            self._stop.wait(LIVE_PAUSE_S)

    def _send(self, parts: list[bytes]) -> bool:
        while not self._stop.is_set():
            try:
                self._sender.socket.send_multipart(parts, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                self._stop.wait(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sender.socket.setsockopt(zmq.LINGER, 0)  # what nobody took is not waited for


def clean_previous_run(directory: Path) -> None:
    """Remove the HDF5 files of earlier runs (older versions named them by time), keeping the
    Tango database, which is reused."""
    old = sorted(directory.glob(PREVIOUS))
    size = sum(path.stat().st_size for path in old)
    for path in old:
        path.unlink()
    if old:
        print(
            f"removed {len(old)} file(s) of an earlier run from {directory} ({size / 1e6:.0f} MB)"
        )


def run_demo(
    directory: Path, frames: int = 200, rate: float = 100.0, hold: Hold | None = None
) -> int:
    """The demo; with ``hold``, everything stays up after the report until ``hold`` returns."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    clean_previous_run(directory)
    filename = directory / DEMO_FILE
    images = synthetic_frames(8, (1065, 1030), "uint32")
    config = load_receiver(CONFIG, NAME)
    device = device_name(config)
    with DatabaseServer(directory / "tango-db") as database, Sender(timeout_s=60) as sender:
        print(f"Tango database server (pytango-db, sqlite) at TANGO_HOST={database.tango_host}")
        register_device(
            database.database(),
            server_instance(NAME),
            device,
            {
                "config_file": CONFIG,
                "receiver_name": NAME,
                "upstream": [f"tcp://127.0.0.1:{sender.port}"],
                "data_host": "127.0.0.1",
                "data_port": 0,
                "api_host": "127.0.0.1",
                "api_port": 0,
                "write_roots": [directory],
            },
        )
        print(
            f"registered {device} in server {server_instance(NAME)}; the simulated EIGER "
            f"streams from tcp://127.0.0.1:{sender.port}"
        )
        server = ServerProcess(
            CONFIG, NAME, directory / "device-server.log", tango_host=database.tango_host
        )
        try:
            proxy = server.start()
            proxy.set_timeout_millis(10000)
            rest = proxy.rest_url
            print(
                f"device server up: {server.url} (log: {server.log_path})\n"
                f"  State {proxy.state()}: {proxy.status()}\n"
                f"REST sidecar: {rest}/status, {rest}/received_frames, {rest}/docs\n"
            )
            snap, consumed, events = stream(proxy, sender, images, str(filename), frames, rate)
            state, status = proxy.state(), proxy.status()
            answers = {path: get_json(rest + path) for path in ("/status", "/received_frames")}
            print(f"\n{server.url}: State {state}\n  {status.replace(chr(10), chr(10) + '  ')}")
            print(
                f"{events} change events on frames_received (at most 10/s); secondary port "
                f"consumer got {consumed} messages"
            )
            print("REST: " + ", ".join(f"GET {path} -> {body}" for path, body in answers.items()))
            same = check_file(filename, images, frames)
            if hold is not None:
                keep_running(proxy, server, database.tango_host, sender, images, directory, hold)
        finally:
            code = server.stop()
    print(f"device server exited with {code}")
    if hold is None:
        print(
            f"\nTo explore it with Taurus, a browser or Python, keep it running: "
            f"{own_command()} demo --keep-running"
        )
    ok = (
        same
        and snap["frames_written"] == frames
        and state == tango.DevState.ON
        and code == 0
        and answers["/received_frames"] == {"value": frames}
    )
    return 0 if ok else 1


def keep_running(
    proxy: tango.DeviceProxy,
    server: ServerProcess,
    tango_host: str,
    sender: Sender,
    images: list[np.ndarray],
    directory: Path,
    hold: Hold,
) -> None:
    """A slow stream while ``hold`` waits for Ctrl-C, and how to reach everything, printed."""
    rest, device = proxy.rest_url, proxy.dev_name()
    live = SlowStream(sender, images, directory / LIVE_FILE)
    print(
        f"""
Running until Ctrl-C: the simulated EIGER sends series of {LIVE_FRAMES} frames at \
{LIVE_RATE:g} frames/s into {directory / LIVE_FILE} (replaced by each series).
  live view   {rest}/live
  REST        {rest}/status   {rest}/stats   {rest}/docs
  secondary   {own_command()} consume tcp://127.0.0.1:{proxy.secondary_port}
  TANGO_HOST  {tango_host}
  Python      import tango; d = tango.DeviceProxy("{server.url}"); print(d.state(), \
d.frames_received)
  Taurus      TANGO_HOST={tango_host} taurus form {device}
""",
        flush=True,
    )

    def status() -> str:
        try:
            values = {a.name: a.value for a in proxy.read_attributes(["series_count", *SHOWN])}
            state = proxy.state()
        except tango.DevFailed as exc:  # said, not raised: Ctrl-C still tears everything down
            return f"{device} does not answer: {exc.args[0].desc}"
        return f"{device}: State {state}, " + ", ".join(f"{k} {v:g}" for k, v in values.items())

    try:
        hold(30.0, status)
    finally:
        live.stop()


def own_command() -> str:
    """This command as the user can type it: the venv's script, relative where it can be."""
    script = Path(sys.executable).with_name("tango-receiver")
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def stream(
    proxy: tango.DeviceProxy,
    sender: Sender,
    images: list[np.ndarray],
    filename: str,
    frames: int,
    rate: float,
) -> tuple[dict, int, int]:
    """Send one series while printing what a plain DeviceProxy reads; the final counters."""
    changes: list[int] = []

    def changed(event: tango.EventData) -> None:
        if not event.err:
            changes.append(event.attr_value.value)

    event_id = proxy.subscribe_event("frames_received", tango.EventType.CHANGE_EVENT, changed)
    consumer = SecondaryConsumer(proxy.secondary_port)
    try:
        thread = threading.Thread(
            target=sender.send,
            kwargs={"rate": rate, "messages": (eiger_v1_series(images, filename, count=frames))},
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 60 + frames / rate
        while time.monotonic() < deadline:
            state = proxy.state()
            snap = {a.name: a.value for a in proxy.read_attributes(SHOWN)}
            print(
                f"  State {str(state):8} received {snap['frames_received']:5} written "
                f"{snap['frames_written']:5} forwarded {snap['frames_forwarded']:5} "
                f"{snap['frame_rate']:6.0f} frames/s",
                flush=True,
            )
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
            np.array_equal(data[i], images[i % len(images)]) for i in range(data.shape[0])
        )
        print(
            f"{filename}: /entry/data/data {data.shape} {data.dtype}, "
            f"series_complete={f['entry'].attrs['series_complete']}, "
            f"every frame equal to the one sent: {same}"
        )
    return same


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
