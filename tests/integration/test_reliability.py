"""Faults a beamline meets over days of running: each injected, and what was kept checked."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import yaml
import zmq

from conftest import Consumer, make_config, wait_for, wait_series_done
from tango_receiver import transport
from tango_receiver.detector import Detector
from tango_receiver.engine import forwarder
from tango_receiver.engine.receiver import Receiver
from tango_receiver.messages import Channel, Header, Image
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender


def noise(count: int, shape=(64, 64)) -> list[np.ndarray]:
    """Incompressible frames, so that a small filesystem fills up fast."""
    rng = np.random.default_rng(3)
    return [rng.integers(0, 2**32, size=shape, dtype=np.uint32) for _ in range(count)]


@pytest.fixture
def small_fs(tmpfs):
    return tmpfs("1m")


def test_disk_full_mid_series_then_reset(tmp_path, sender, small_fs):
    frames = noise(120)  # 16 kB each: about 2 MB, twice the filesystem
    target = small_fs / "full.h5"
    roomy = tmp_path / "roomy"
    config = make_config(
        sender.port, tmp_path, write_roots=[str(small_fs), str(roomy)], flush_interval_s=0.05
    )
    receiver = Receiver(config)
    receiver.start()
    try:
        sender.send(internal_series(frames, str(target), compression="none"), rate=400)
        snap = wait_series_done(receiver)
        assert snap.state == "error"
        assert "disk full" in snap.error and str(target) in snap.error
        assert 0 < snap.frames_written < len(frames)
        assert snap.frames_received == len(frames)  # forwarded and shown all the same
        written = snap.frames_written

        receiver.reset()
        assert receiver.snapshot().state == "idle"
        sender.send(internal_series(frames[:10], str(roomy / "after.h5"), compression="none"))
        snap = wait_series_done(receiver, 2)
        assert snap.state == "idle" and snap.series_complete and snap.frames_written == 10
    finally:
        receiver.close()
    with h5py.File(target, "r") as f:  # what was flushed before the disk filled is readable
        data = f["/entry/data/data"]
        flushed = f["/entry/instrument/detector/sequence_number"][()]
        assert 0 < len(flushed) <= written and f["entry"].attrs["frames_written"] == len(flushed)
        assert list(flushed) == list(range(len(flushed)))
        for i in range(len(flushed)):
            assert np.array_equal(data[i], frames[i])
    with h5py.File(roomy / "after.h5", "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames[:10]))


def _receiver_process(tmp_path: Path, port: int, **extra) -> subprocess.Popen:
    entry = {
        "class": "Detector",
        "upstream": [f"tcp://127.0.0.1:{port}"],
        "data_port": 0,
        "data_host": "127.0.0.1",
        "api_host": "127.0.0.1",
        "api_port": 0,
        "write_roots": [str(tmp_path)],
        **extra,
    }
    config = tmp_path / "detectors.yaml"
    config.write_text(yaml.safe_dump({"crashy": entry}))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tango_receiver.cli",
            "run",
            str(config),
            "crashy",
            "--status-every",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _send_until_written(proc: subprocess.Popen, sender, messages: list, count: int) -> None:
    """Send, then wait until the receiver's status line shows every frame written."""
    sender.send(messages)
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if f"written {count} " in line:
            return
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"receiver did not report {count} frames written")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_mid_series_keeps_what_was_flushed(tmp_path, sender, sig):
    frames = synthetic_frames(30, (32, 48), "uint16", rate=2.0)
    target = tmp_path / f"killed_{sig.name}.h5"
    proc = _receiver_process(tmp_path, sender.port, flush_interval_s=0.2)
    try:
        messages = list(internal_series(frames, str(target)))[:-1]  # no series_end: mid-series
        _send_until_written(proc, sender, messages, len(frames))
        time.sleep(0.5)  # more than one flush interval with nothing new
        proc.send_signal(sig)
        assert proc.wait(10) == (-9 if sig == signal.SIGKILL else 0)
    finally:
        proc.kill()
        proc.communicate()
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape[0] == len(frames)
        for i, frame in enumerate(frames):
            assert np.array_equal(data[i], frame)
        assert list(f["/entry/instrument/detector/sequence_number"][()]) == list(range(30))
        assert not f["entry"].attrs["series_complete"]


def test_detector_restart_closes_the_open_file_incomplete(tmp_path, sender):
    frames = synthetic_frames(5, (16, 16), "uint32")
    first = list(internal_series(frames, str(tmp_path / "first.h5")))[:-1]
    second = list(internal_series(frames[:3], str(tmp_path / "second.h5")))
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    try:
        sender.send(first + second)
        snap = wait_series_done(receiver, 2)
    finally:
        receiver.close()
    assert snap.series_complete and snap.frames_written == 3
    assert any("new header before series_end" in m for m in snap.messages)
    with h5py.File(tmp_path / "first.h5", "r") as f:
        assert not f["entry"].attrs["series_complete"]
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))
    with h5py.File(tmp_path / "second.h5", "r") as f:
        assert f["entry"].attrs["series_complete"]
        assert f["/entry/data/data"].shape[0] == 3


def test_consumer_that_comes_and_goes_never_slows_writing(tmp_path, sender):
    frames = synthetic_frames(8, (64, 64), "uint32", rate=1.0)
    count, rate = 600, 1500.0
    receiver = Receiver(make_config(sender.port, tmp_path, forward_hwm=20))
    receiver.open()
    got: list[int] = []

    def flaky_consumer() -> None:
        for _ in range(3):  # connect, read slowly for a while, vanish; again
            consumer = Consumer(receiver.secondary_port)
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                if consumer.socket.poll(5):
                    consumer.socket.recv_multipart()
                    got.append(1)
                    time.sleep(0.005)
            consumer.close()
            time.sleep(0.05)

    receiver.start()
    thread = threading.Thread(target=flaky_consumer)
    try:
        start = time.monotonic()
        thread.start()
        sender.send(internal_series(frames, str(tmp_path / "fwd.h5"), count=count), rate=rate)
        snap = wait_series_done(receiver)
        elapsed = time.monotonic() - start
        thread.join()
    finally:
        receiver.close()
    assert snap.frames_written == count and snap.series_complete
    assert snap.frames_forwarded + snap.forward_dropped + snap.forward_no_consumer == count
    assert snap.forward_no_consumer > 0  # between two connections nobody was there
    assert 0 < len(got) <= snap.frames_forwarded
    assert elapsed < count / rate + 2.0  # writing kept pace with the detector throughout


def test_a_stalled_consumer_holds_big_frames_up_to_the_forward_bytes_only(
    tmp_path, sender, monkeypatch
):
    monkeypatch.setattr(forwarder, "FORWARD_BYTES", 16 << 20)
    shape, count = (1024, 1024), 40  # 4 MB raw, sent raw and forwarded raw
    frames = synthetic_frames(2, shape, "uint32", rate=1.0)
    receiver = Receiver(make_config(sender.port, tmp_path, shape=list(shape), dtype="uint32"))
    receiver.open()
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.PULL)  # connected, never reads
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.connect(f"tcp://127.0.0.1:{receiver.secondary_port}")
    wait_for(lambda: receiver.snapshot().consumers == 1, what="the consumer to connect")
    receiver.start()
    try:
        sender.send(
            internal_series(frames, str(tmp_path / "stalled.h5"), compression="none", count=count)
        )
        snap = wait_series_done(receiver)
    finally:
        receiver.close()
        stalled.close(linger=0)
        ctx.term()
    assert snap.frames_written == count and snap.series_complete
    # 16 MB queued (4 frames), one on its way, and what the loopback's buffers hold (a few MB
    # each side)
    assert snap.frames_forwarded <= 4 + 8
    assert snap.forward_dropped == count - snap.frames_forwarded


def test_silent_upstream_is_reported_and_the_next_series_taken(tmp_path, sender):
    frames = synthetic_frames(4, (16, 16), "uint32")
    receiver = Receiver(make_config(sender.port, tmp_path, silence_timeout_s=0.3))
    receiver.start()
    try:
        sender.send(list(internal_series(frames, str(tmp_path / "quiet.h5")))[:3])
        wait_for(
            lambda: any("no data from the detector" in m for m in receiver.snapshot().messages),
            5,
            "a silence warning",
        )
        assert receiver.snapshot().in_series
        sender.send(internal_series(frames, str(tmp_path / "next.h5")))
        snap = wait_series_done(receiver, 2)
    finally:
        receiver.close()
    assert snap.series_complete and snap.frames_written == 4
    with h5py.File(tmp_path / "quiet.h5", "r") as f:
        assert f["/entry/data/data"].shape[0] == 2 and not f["entry"].attrs["series_complete"]


def test_sigterm_on_the_cli_process_is_exit_zero(tmp_path, sender):
    proc = _receiver_process(tmp_path, sender.port)
    try:
        for line in proc.stdout:  # the first status line: up, handlers installed
            if "crashy: idle" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        output = proc.communicate()[0]
    assert "closed cleanly" in output, output


def test_a_failing_command_reaches_its_caller_and_the_engine_goes_on(tmp_path, sender):
    frames = synthetic_frames(3, (16, 16), "uint32")
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    try:
        with pytest.raises(ZeroDivisionError):
            receiver._call(lambda: 1 / 0)  # what any command that breaks in the engine does
        sender.send(internal_series(frames, str(tmp_path / "after_command.h5")))
        snap = wait_series_done(receiver)
    finally:
        receiver.close()
    assert snap.frames_written == 3 and snap.series_complete


class SlowOnOneFrame(Detector):
    """The general case, but frame ``slow`` takes its worker until ``release`` is set: a
    worker held up (a pathological frame, a page-fault storm) while the other goes on."""

    def __init__(self, config, slow: int) -> None:
        super().__init__(config)
        self.slow, self.release, self.decoded = slow, threading.Event(), []

    def decode(self, parts):
        message = super().decode(parts)
        if isinstance(message, Image):
            if message.frame == self.slow:
                self.release.wait(30)
            self.decoded.append(message.frame)
        return message


def _assert_written_in_order(snap, path: Path, frames: list[np.ndarray], count: int) -> None:
    assert snap.frames_written == count and snap.series_complete
    assert snap.frames_missing == snap.frames_duplicate == snap.frames_invalid == 0
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        for i in range(count):
            assert np.array_equal(data[i], frames[i % len(frames)]), i


def test_frames_waiting_for_a_slow_worker_count_in_the_queue_budget(tmp_path, sender, monkeypatch):
    """Frames the ordering holds for a slower worker's frame are bounded by ``queue_mb``: the
    other worker stops decoding, and once the slow frame comes, every frame is written."""
    # 2 frames a batch, however late a worker comes to its socket
    monkeypatch.setattr(transport, "BATCH_BYTES", 512 << 10)
    # 256 kB raw, about 512 kB held each (sent raw, compressed on the way: both are kept)
    frames, count = noise(8, shape=(256, 256)), 120
    target = tmp_path / "slow.h5"
    config = make_config(sender.port, tmp_path, nworkers=2, queue_mb=1, gap_timeout_s=30)
    detector = SlowOnOneFrame(config, slow=1)
    receiver = Receiver(config, detector)
    receiver.start()
    try:
        sender.send(internal_series(frames, str(target), compression="none", count=count), rate=300)
        time.sleep(0.5)
        # the budget's 1 MB (2 frames), the batches that passed it and the one in hand (2
        # frames each), the slow worker's: without the bound, the other worker's 60 or so
        assert len(detector.decoded) <= 12, detector.decoded
        detector.release.set()
        snap = wait_series_done(receiver)
    finally:
        detector.release.set()
        receiver.close()
    _assert_written_in_order(snap, target, frames, count)


def test_a_frame_behind_a_waiting_batch_still_comes_through(tmp_path, sender):
    """Two upstream endpoints interleave in each worker's socket: the frame the ordering waits
    for may sit behind a batch that waits for room. Every batch passes once the frames held
    have used a quarter of the 6 s gap timeout, and the frame is written: were the batch held
    until the gap timeout, the frame would be counted missing."""
    frames, count = noise(8, shape=(256, 256)), 120
    target = tmp_path / "late.h5"
    messages = list(internal_series(frames, str(target), compression="none", count=count))
    late = messages.pop(2)  # frame 1
    with Sender(timeout_s=60) as second:
        config = make_config(
            sender.port,
            tmp_path,
            nworkers=2,
            queue_mb=1,
            gap_timeout_s=6,
            upstream=[sender.endpoint, second.endpoint],
        )
        receiver = Receiver(config)
        receiver.start()
        try:
            sender.send(messages[:-1])
            wait_for(lambda: receiver.snapshot().frames_received == 1, what="frame 0")
            time.sleep(0.5)  # the workers take what they can, then wait
            second.send([late])
            wait_for(
                lambda: receiver.snapshot().frames_received == count,
                timeout=5.5,
                what="every frame, before the gap timeout",
            )
            sender.send(messages[-1:])  # the end after the frames: no grace cuts them short
            snap = wait_series_done(receiver)
        finally:
            receiver.close()
    _assert_written_in_order(snap, target, frames, count)


def test_a_batch_passes_a_spent_budget_when_the_ordering_needs_it(tmp_path):
    """The rule alone, on a receiver not started: the batch that holds the awaited frame, and
    any batch once the frames held have used a quarter of their wait."""
    receiver = Receiver(make_config(1, tmp_path, nworkers=2, gap_timeout_s=2))
    try:
        order = receiver._ordering
        assert not receiver._must_pass_budget(1)  # nothing held: the budget rules
        order.push(Header(0))
        order.push(Image(3, 2, [Channel("data", (1,), "uint8", "none", b"x")]))  # waits for 1
        assert receiver._must_pass_budget(1) and not receiver._must_pass_budget(4)
        start = time.monotonic()
        order.clock = lambda: start + 0.51
        assert receiver._must_pass_budget(4)
    finally:
        receiver.close()
