"""Shared test helpers: real sockets on 127.0.0.1, real files in tmp_path."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import zmq

from tango_receiver.config import ReceiverConfig, parse_entry
from tango_receiver.engine.receiver import Receiver
from tango_receiver.engine.stats import StatsSnapshot
from tango_receiver.sim.lambda_ import ModuleSenders
from tango_receiver.sim.sender import Sender

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-frames",
        type=int,
        default=1_000_000,
        help="frames the soak test streams (tests/test_soak.py)",
    )


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"captured fixtures not found at {FIXTURES} (../shared beside the checkout)")
    return FIXTURES


def make_config(port: int, root: Path, detector_class: str = "Detector", **extra) -> ReceiverConfig:
    entry = {
        "class": detector_class,
        "upstream": [f"tcp://127.0.0.1:{port}"],
        "data_port": 0,
        "data_host": "127.0.0.1",
        "write_roots": [str(root)],
        "gap_timeout_s": 0.5,
        "dset_name": "/entry/instrument/detector/data",
    } | extra
    return parse_entry("test-" + detector_class.lower(), entry)


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a process of the test's to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


def wait_series_done(
    receiver: Receiver, series_count: int = 1, timeout: float = 20.0
) -> StatsSnapshot:
    def done() -> bool:
        s = receiver.snapshot()
        return s.series_count >= series_count and not s.in_series and s.queue_depth == 0

    wait_for(done, timeout, f"series {series_count} to end")
    return receiver.snapshot()


class Consumer:
    """A secondary-port client written from the documented message format alone."""

    def __init__(self, port: int) -> None:
        self.ctx = zmq.Context()
        self.socket = self.ctx.socket(zmq.PULL)
        self.socket.connect(f"tcp://127.0.0.1:{port}")

    def receive_all(self, timeout_s: float = 5.0) -> list[list[bytes]]:
        """Every message until series_end (or timeout)."""
        import json

        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.socket.poll(100):
                parts = self.socket.recv_multipart()
                out.append(parts)
                if json.loads(parts[0]).get("htype") == "series_end":
                    break
        return out

    def close(self) -> None:
        self.socket.close(linger=0)
        self.ctx.term()


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[str], Path]]:
    """``tmpfs("4m")``: a real filesystem of that size (a disk that fills), unmounted after the
    test; the test skips, saying why, where mounting is not allowed (not root)."""
    mounts: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"tmpfs{len(mounts)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
        mounts.append(path)
        return path

    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def sender():
    with Sender(timeout_s=60) as s:
        yield s


def run_series(
    config: ReceiverConfig, sender: Sender, messages: Iterable[list], series_count: int = 1
) -> tuple[Receiver, StatsSnapshot]:
    """Start a receiver, send, wait for the series to end; the caller closes the receiver."""
    receiver = Receiver(config)
    receiver.start()
    sender.send(messages)
    return receiver, wait_series_done(receiver, series_count)


def run_with_consumer(
    config: ReceiverConfig, sender: Sender | ModuleSenders, messages: Iterable
) -> tuple[StatsSnapshot, list[list[bytes]]]:
    """One series with a secondary-port consumer connected first: (snapshot, what it got)."""
    receiver = Receiver(config)
    receiver.open()
    consumer = Consumer(receiver.secondary_port)
    try:
        wait_for(lambda: receiver.snapshot().consumers == 1, 10, "the consumer to connect")
        receiver.start()
        sender.send(messages)
        snap = wait_series_done(receiver)
        forwarded = consumer.receive_all()
    finally:
        consumer.close()
        receiver.close()
    return snap, forwarded
