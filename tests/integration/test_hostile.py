"""Issue 19, one test (or a few) per numbered finding: what one message or a full disk did to
the receiver, and what it must do instead. Real sockets on 127.0.0.1, real files read back."""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from tango import DevState

from conftest import make_config, wait_for, wait_series_done
from tango_receiver.api.app import create_app
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.engine.receiver import Receiver
from tango_receiver.engine.stats import Stats
from tango_receiver.engine.writer import SeriesWriter
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.tango.device import state_of

SHAPE = (16, 16)


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def header(filename, number: int = 0, **fields) -> list[bytes]:
    return [j({"htype": "header", "msg_number": number, "filename": str(filename), **fields})]


def image(number: int, blob: bytes, shape=SHAPE, compression: str = "bslz4") -> list[bytes]:
    return [
        j(
            {
                "htype": "image",
                "msg_number": number,
                "frame": number - 1,
                "shape": list(shape),
                "type": "uint32",
                "compression": compression,
            }
        ),
        blob,
    ]


def end(number: int) -> list[bytes]:
    return [j({"htype": "series_end", "msg_number": number})]


def series(filename, frames, **fields) -> list[list[bytes]]:
    return [
        header(filename, **fields),
        *(image(i + 1, encode_chunk(f), f.shape) for i, f in enumerate(frames)),
        end(len(frames) + 1),
    ]


def noise(count: int, shape=(64, 64)) -> list[np.ndarray]:
    """Incompressible frames (16 kB each at 64 x 64), so that a small filesystem fills fast."""
    rng = np.random.default_rng(19)
    return [rng.integers(0, 2**32, size=shape, dtype=np.uint32) for _ in range(count)]


@pytest.fixture
def receiver(tmp_path, sender):
    r = Receiver(make_config(sender.port, tmp_path))
    r.start()
    yield r
    r.close()


def assert_file_holds(path, frames, count: int) -> None:
    """Exactly ``count`` frames, the first ones sent, with their sequence numbers: read with
    plain h5py + hdf5plugin."""
    with h5py.File(path, "r") as f:
        data = f["/entry/data/data"]
        sequence = f["/entry/instrument/detector/sequence_number"][()]
        assert data.shape[0] == count == len(sequence) == f["entry"].attrs["frames_written"]
        assert list(sequence) == list(range(count))
        if count:
            assert np.array_equal(data[()], np.stack(frames[:count]))


def assert_alive(receiver: Receiver) -> None:
    assert receiver.health() == ""
    assert receiver._engine is not None and receiver._engine.is_alive()


# --- 1. a header whose nimages is a string or a list ---------------------------------------
@pytest.mark.parametrize("nimages", ["5", [5], -1, 2**64, 1.5])
def test_1_bad_header_field_is_refused_and_the_engine_goes_on(tmp_path, sender, receiver, nimages):
    frames = synthetic_frames(3, SHAPE, "uint32", rate=1.0)
    sender.send(series(tmp_path / "bad.h5", frames, nimages=nimages))
    sender.send(series(tmp_path / "good.h5", frames))
    snap = wait_series_done(receiver, 1, timeout=10)
    assert snap.state == "idle" and snap.series_complete and snap.frames_written == 3
    assert any("header field 'nimages'" in m and repr(nimages) in m for m in snap.messages)
    assert not (tmp_path / "bad.h5").exists()
    assert_file_holds(tmp_path / "good.h5", frames, 3)
    assert_alive(receiver)


# --- 2. nimages = 1e9 ---------------------------------------------------------------------
def test_2_an_announced_count_costs_nothing(tmp_path, sender, receiver):
    frames = synthetic_frames(2, SHAPE, "uint32", rate=1.0)
    started = time.monotonic()
    sender.send(series(tmp_path / "huge.h5", frames, nimages=10**9))
    snap = wait_series_done(receiver, 1, timeout=5)
    assert time.monotonic() - started < 2, "closing a 2-frame series must not take seconds"
    assert snap.series_complete and snap.frames_written == 2
    assert_file_holds(tmp_path / "huge.h5", frames, 2)


def test_2_datasets_are_pre_sized_by_at_most_one_block(tmp_path):
    from tango_receiver.messages import Channel, Header, Image

    writer = SeriesWriter(
        Header(0, str(tmp_path / "a.h5"), nimages=10**12),
        "/entry/instrument/detector/data",
        [tmp_path],
        60.0,
    )
    frame = np.zeros(SHAPE, np.uint32)
    writer.write(Image(1, 0, [Channel("data", SHAPE, "uint32", "bslz4", encode_chunk(frame))]))
    assert writer._datasets[0].shape[0] <= 1024
    writer.close(True)


# --- 3. a full disk at any moment ----------------------------------------------------------
@pytest.mark.parametrize("when", ["before the first flush", "mid-series", "during close"])
def test_3_full_disk_keeps_exactly_the_frames_written(tmp_path, sender, tmpfs, when):
    disk = tmpfs("4m")
    frames = noise(400)  # 6.4 MB: more than the disk
    target = disk / "full.h5"
    flush = 0.05 if when == "mid-series" else 1000.0
    receiver = Receiver(
        make_config(sender.port, tmp_path, write_roots=[str(disk)], flush_interval_s=flush)
    )
    receiver.start()
    try:
        if when == "during close":
            sent = frames[:40]
            messages = series(target, sent)
            sender.send(messages[:-1])
            wait_for(lambda: receiver.snapshot().frames_written == len(sent), 10)
            with open(disk / "filler", "wb") as filler:  # another writer takes the rest
                with pytest.raises(OSError):
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
            sender.send(messages[-1:])
        else:
            sender.send(series(target, frames), rate=2000 if when == "mid-series" else None)
        snap = wait_series_done(receiver, 1, timeout=20)
        if when == "during close":
            assert snap.state == "idle" and snap.series_complete and snap.frames_written == 40
        else:
            assert snap.state == "error" and "disk full" in snap.error
            assert "\n" not in snap.error and "0x" not in snap.error
            assert 0 < snap.frames_written < len(frames)
        assert snap.frames_received == len(frames) if when != "during close" else 40
        assert_file_holds(target, frames, snap.frames_written)

        target.unlink()  # space freed: the next series is written
        (disk / "filler").unlink(missing_ok=True)
        sender.send(series(disk / "next.h5", frames[:10]))
        snap = wait_series_done(receiver, 2, timeout=20)
        assert snap.state == "idle" and snap.series_complete and snap.frames_written == 10
        assert_file_holds(disk / "next.h5", frames, 10)
    finally:
        receiver.close()


def test_3_a_filesystem_that_cannot_reserve_is_written_unreserved(
    tmp_path, sender, monkeypatch, caplog
):
    from tango_receiver.engine import diskspace

    def unsupported(*args):
        ctypes.set_errno(errno.EOPNOTSUPP)
        return -1

    monkeypatch.setattr(diskspace, "_fallocate", unsupported)
    frames = noise(5)
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    try:
        with caplog.at_level(logging.WARNING):
            sender.send(series(tmp_path / "a.h5", frames))
            sender.send(series(tmp_path / "b.h5", frames))
            snap = wait_series_done(receiver, 2, timeout=10)
    finally:
        receiver.close()
    assert snap.state == "idle" and snap.frames_written == 5
    assert_file_holds(tmp_path / "b.h5", frames, 5)
    assert len([r for r in caplog.records if "cannot reserve" in r.getMessage()]) <= 1


# --- 4. a chunk cut in half ----------------------------------------------------------------
def test_4_a_chunk_cut_in_half_is_refused_with_default_settings(tmp_path, sender, receiver):
    frames = noise(3, SHAPE)
    chunk = encode_chunk(frames[1])
    messages = series(tmp_path / "cut.h5", frames)
    messages.insert(2, image(2, chunk[: len(chunk) // 2]))  # before the whole frame 2
    sender.send(messages)
    snap = wait_series_done(receiver, 1, timeout=10)
    assert (snap.frames_written, snap.frames_invalid) == (3, 1)
    assert any("truncated" in m for m in snap.messages)
    assert_file_holds(tmp_path / "cut.h5", frames, 3)


def test_4_verify_chunks_catches_a_corrupt_table_that_adds_up(tmp_path, sender):
    frames = noise(2, (64, 64))
    corrupt = bytearray(encode_chunk(frames[0]))
    first = int.from_bytes(corrupt[12:16], "big")
    second = int.from_bytes(corrupt[16 + first : 20 + first], "big")
    corrupt[12:16] = (first - 8).to_bytes(4, "big")  # block 0 shorter, block 1 starts early
    at = 16 + first - 8
    corrupt[at : at + 4] = (second + 8).to_bytes(4, "big")  # ... and ends where it did
    receiver = Receiver(make_config(sender.port, tmp_path, verify_chunks=True))
    receiver.start()
    try:
        sender.send(
            [
                header(tmp_path / "v.h5"),
                image(1, bytes(corrupt), (64, 64)),
                image(1, encode_chunk(frames[0]), (64, 64)),
                image(2, encode_chunk(frames[1]), (64, 64)),
                end(3),
            ]
        )
        snap = wait_series_done(receiver, 1, timeout=10)
    finally:
        receiver.close()
    assert (snap.frames_written, snap.frames_invalid) == (2, 1)
    assert any("corrupt bitshuffle-LZ4" in m for m in snap.messages)
    assert_file_holds(tmp_path / "v.h5", frames, 2)


# --- 5. errors clear -----------------------------------------------------------------------
def test_5_error_clears_after_a_clean_series_and_on_post_reset(tmp_path, sender, receiver):
    frames = synthetic_frames(2, SHAPE, "uint32", rate=1.0)
    sender.send(series("/elsewhere/refused.h5", frames))
    snap = wait_series_done(receiver, 1, timeout=10)
    assert snap.state == "error" and "outside the write roots" in snap.error
    refused = snap.error

    sender.send(series(tmp_path / "good.h5", frames))
    snap = wait_series_done(receiver, 2, timeout=10)
    assert snap.state == "idle" and snap.error == ""
    assert refused in snap.messages  # what happened is still there to read

    client = TestClient(create_app(receiver))
    sender.send(series("/elsewhere/refused.h5", frames))
    wait_series_done(receiver, 3, timeout=10)
    assert client.get("/status").json()["state"] == "error"
    assert client.post("/reset").json() == {"state": "idle"}
    assert client.get("/status").json() == {"state": "idle"}


def test_5_hdf5_error_text_is_one_readable_line():
    from tango_receiver.engine.errors import one_line  # here: the module is new with issue 19

    text = (
        "Can't write data (file write failed: time = Sat Dec  5 23:00:00 2026\n, filename = "
        "'/data/a.h5', file descriptor = 5, errno = 28, error message = 'No space left on "
        "device', buf = 0x55d1c2f0a010, total write size = 16384, offset = 1048576)"
    )
    line = one_line(text)
    assert "\n" not in line and "0x" not in line and "No space left on device" in line


# --- 6. control characters in a filename ---------------------------------------------------
@pytest.mark.parametrize(
    "name", ["a\x00b.h5", "a.h5\nERROR forged line", "a\x1b[2J.h5", "a\u2028b.h5"]
)
def test_6_control_characters_are_a_normal_refusal(tmp_path, sender, receiver, caplog, name):
    frames = synthetic_frames(1, SHAPE, "uint32", rate=1.0)
    with caplog.at_level(logging.WARNING):
        sender.send(series(f"{tmp_path}/{name}", frames))
        sender.send(series(tmp_path / "good.h5", frames))
        snap = wait_series_done(receiver, 1, timeout=10)
    assert snap.frames_written == 1 and snap.state == "idle"
    refusal = [m for m in snap.messages if "header field 'filename'" in m]
    assert refusal and "control character" in refusal[0]
    assert not any("internal error" in m or "decoder error" in m for m in snap.messages)
    for record in caplog.records:
        assert record.getMessage().isprintable(), record.getMessage()


# --- 7. State after Stop -------------------------------------------------------------------
def test_7_state_precedence_fault_off_running_alarm_on():
    stats = Stats()
    stats.connected = True
    stats.frames_missing = 1  # a loss: ALARM until Reset
    snap = stats.snapshot()
    assert state_of(snap) == DevState.ALARM
    assert state_of(replace(snap, connected=False)) == DevState.OFF  # Stop
    assert state_of(replace(snap, in_series=True)) == DevState.RUNNING
    assert state_of(replace(snap, in_series=True, connected=False)) == DevState.OFF
    assert state_of(replace(snap, state="error", connected=False)) == DevState.FAULT
    assert state_of(replace(snap, alarm=False)) == DevState.ON


# --- 8. the raw output of bitshuffle.compress_lz4() ----------------------------------------
def test_8_a_chunk_without_its_header_is_refused_saying_so(tmp_path, sender, receiver):
    frames = noise(2, SHAPE)
    raw = bitshuffle.compress_lz4(frames[0]).tobytes()
    messages = series(tmp_path / "raw.h5", frames)
    messages.insert(1, image(1, raw))
    sender.send(messages)
    snap = wait_series_done(receiver, 1, timeout=10)
    assert (snap.frames_written, snap.frames_invalid) == (2, 1)
    assert any("12-byte bitshuffle-LZ4 chunk header" in m and "missing" in m for m in snap.messages)


# --- 9. supervised threads -----------------------------------------------------------------
def test_9_an_exception_on_one_message_costs_that_message(
    tmp_path, sender, receiver, monkeypatch, caplog
):
    frames = synthetic_frames(3, SHAPE, "uint32", rate=1.0)
    write = SeriesWriter.write

    def buggy(self, img):
        if img.frame == 1:
            raise KeyError("a bug")
        write(self, img)

    monkeypatch.setattr(SeriesWriter, "write", buggy)
    with caplog.at_level(logging.ERROR):
        sender.send(series(tmp_path / "bug.h5", frames))
        snap = wait_series_done(receiver, 1, timeout=10)
    assert (snap.frames_received, snap.frames_written, snap.frames_invalid) == (3, 2, 1)
    assert any("message 2" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    sender.send(series(tmp_path / "after.h5", frames))
    snap = wait_series_done(receiver, 2, timeout=10)
    assert snap.state == "idle" and snap.frames_written == 3
    assert_alive(receiver)


def test_9_a_thread_that_dies_is_said_everywhere(tmp_path, sender, monkeypatch):
    receiver = Receiver(make_config(sender.port, tmp_path))

    def broken(*args):
        raise RuntimeError("the engine's bookkeeping broke")

    monkeypatch.setattr(receiver, "_return_budget", broken)
    receiver.start()
    try:
        wait_for(lambda: receiver.health() != "", 10, "the engine thread to die")
        snap = receiver.snapshot()
        assert snap.state == "error" and "died" in snap.error and "bookkeeping" in snap.error
        assert state_of(snap) == DevState.FAULT
        client = TestClient(create_app(receiver))
        assert client.get("/health").status_code == 503
        assert client.get("/status").json()["state"] == "error"
        client.post("/reset")  # cannot bring a thread back
        assert client.get("/health").status_code == 503
    finally:
        receiver.close()


def test_9_health_is_2xx_while_the_receiver_works(receiver):
    client = TestClient(create_app(receiver))
    assert client.get("/health").status_code == 200


def test_9_run_exits_non_zero_when_a_thread_dies(tmp_path, sender):
    config = tmp_path / "detectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dies": {
                    "class": "Detector",
                    "upstream": [f"tcp://127.0.0.1:{sender.port}"],
                    "data_port": 0,
                    "data_host": "127.0.0.1",
                    "api_host": "127.0.0.1",
                    "api_port": 0,
                    "write_roots": [str(tmp_path)],
                }
            }
        )
    )
    script = (
        "import sys\n"
        "from tango_receiver import cli\n"
        "from tango_receiver.engine.receiver import Receiver\n"
        "def broken(self, *args): raise RuntimeError('injected')\n"
        "Receiver._return_budget = broken\n"
        f"sys.exit(cli.main(['run', {str(config)!r}, 'dies']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ | {"LOG_LEVEL": "INFO"},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "died" in result.stderr and "injected" in result.stderr
