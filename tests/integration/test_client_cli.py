"""``tango-receiver consume``: the command against a live receiver, and its report and store on
their own (gaps, a series joined midway, progress lines at high rates)."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading

import h5py
import numpy as np
import zmq

from conftest import make_config, wait_for, wait_series_done
from tango_receiver.client import consume as consume_module
from tango_receiver.client.consume import LINES_PER_S, Report, consume
from tango_receiver.client.messages import parse
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.internal import encoded_series

FRAMES = [(np.arange(24 * 32, dtype=np.uint16) * (i + 1)).reshape(24, 32) for i in range(5)]


def series(series_id: int) -> list[list[bytes]]:
    images = [
        ({"shape": [24, 32], "type": "uint16", "compression": "bslz4"}, [encode_chunk(f)])
        for f in FRAMES
    ]
    messages = list(encoded_series(images, metadata={"sample": "lysozyme"}))
    head = json.loads(messages[0][0]) | {"series_id": series_id}
    messages[0][0] = json.dumps(head).encode()
    return messages


def test_consume_command_prints_and_saves_two_series(tmp_path, sender):
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.open()
    saved = tmp_path / "got"
    command = [
        sys.executable,
        "-m",
        "tango_receiver.cli",
        "consume",
        str(receiver.secondary_port),
        "--save",
        str(saved),
        "--count",
        "14",
        "--timeout",
        "20",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: receiver.snapshot().consumers == 1, 20, "consume to connect")
        receiver.start()
        for number in (1, 2):
            sender.send(series(number))
            wait_series_done(receiver, number)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        receiver.close()
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"consuming tcp://127.0.0.1:{receiver.secondary_port}, saving to {saved}"
    assert lines[1] == "header 0 series 1 file -"
    assert lines[2] == f"image 1 frame 0 24x32 uint16 bslz4 ({len(encode_chunk(FRAMES[0]))} bytes)"
    assert lines[7:9] == ["series_end 6", "  series ended: 5 images received"]
    assert lines[9] == "header 0 series 2 file -"
    assert lines[-1] == "14 messages, 10 images, 0 missing"
    for number in (1, 2):
        with h5py.File(saved / f"series_{number}.h5", "r") as f:
            assert np.array_equal(f["data"][()], np.stack(FRAMES))
            assert list(f["frame"][()]) == [0, 1, 2, 3, 4]
            assert list(f["msg_number"][()]) == [1, 2, 3, 4, 5]
            assert json.loads(f.attrs["metadata"]) == {"sample": "lysozyme"}
            assert json.loads(f.attrs["header"])["series_id"] == number


def test_gaps_a_joined_series_and_what_cannot_be_saved(tmp_path):
    """A consumer that missed messages says which; images without a header get a file of
    their own; an image that does not fit its series is reported, not saved, and the exit
    status says so."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    out = io.StringIO()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(consume(str(port), tmp_path, None, 2.0, out))
    )
    thread.start()
    messages = series(7)
    odd = [messages[2][0], encode_chunk(np.zeros((4, 4), np.uint16))]  # says 24x32, holds 4x4
    other = [
        json.dumps(
            {
                "htype": "image",
                "msg_number": 3,
                "frame": 2,
                "shape": [2, 2],
                "type": "uint8",
                "compression": "none",
            }
        ).encode(),
        bytes(4),
    ]
    try:
        for parts in (
            *messages[2:4],
            other,
            messages[0],
            messages[1],
            odd,
            messages[4],
            messages[6],
        ):
            push.send_multipart(parts)
        thread.join(timeout=30)
    finally:
        push.close(linger=0)
        ctx.term()
    text = out.getvalue()
    assert result == [1]
    assert (
        "image 2 frame 1 24x32 uint16 bslz4" in text
        and "[outside a series (its header was not received)]" in text
    )
    assert (
        "image 3 not saved: arrays data [2, 2] uint8 differ from the series' data "
        "[24, 32] uint16" in text
    )
    assert "image 2 not saved: data: bitshuffle-LZ4 chunk holds 32 bytes" in text
    size = len(messages[4][1])
    assert f"image 4 frame 3 24x32 uint16 bslz4 ({size} bytes) [1 missing before]" in text
    assert "series_end 6 [1 missing before]" in text
    assert text.splitlines()[-1] == "8 messages, 6 images, 2 missing"
    with h5py.File(tmp_path / "joined_at_2.h5", "r") as f:
        assert not f.attrs["header_received"]
        assert np.array_equal(f["data"][()], np.stack(FRAMES[1:3]))
    with h5py.File(tmp_path / "series_7.h5", "r") as f:
        assert np.array_equal(f["data"][()], np.stack([FRAMES[0], FRAMES[3]]))


def test_progress_lines_take_over_at_high_rates():
    now = [0.0]
    out = io.StringIO()
    report = Report(out, clock=lambda: now[0])
    image = parse(
        [
            json.dumps(
                {
                    "htype": "image",
                    "msg_number": 1,
                    "frame": 0,
                    "shape": [4],
                    "type": "uint8",
                    "compression": "none",
                }
            ).encode(),
            bytes(4),
        ]
    )
    for i in range(500):  # 500 images in one second
        now[0] = i / 500
        report.message(image)
    now[0] = 1.0
    report.message(image)
    lines = out.getvalue().splitlines()
    assert len(lines) == LINES_PER_S + 2
    assert lines[LINES_PER_S] == "... 480 more images in 1.0 s (480/s, 0.0 MB/s), 500 in all"
    assert lines[-1].startswith("image 1 frame 0 4 uint8 none")  # a new second: lines again


def test_sigterm_closes_the_saved_file_whole(tmp_path):
    """A series cut short by SIGTERM: exit 0 and a file holding every image received."""
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDTIMEO, 20000)  # a consumer that never comes fails the test
    port = push.bind_to_random_port("tcp://127.0.0.1")
    process = subprocess.Popen(
        [sys.executable, "-m", "tango_receiver.cli", "consume", str(port), "--save", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for parts in series(3)[:3]:  # the header and two images; no series_end
            push.send_multipart(parts)
        wait_for(
            lambda: any(line.startswith("image 2 ") for line in lines),
            20,
            "consume to print image 2",
        )
        process.terminate()
        assert process.wait(20) == 0, process.stderr.read()
        reader.join(10)
    finally:
        process.kill()
        push.close(linger=0)
        ctx.term()
    assert lines[-1] == "3 messages, 2 images, 0 missing\n"
    with h5py.File(tmp_path / "series_3.h5", "r") as f:
        assert np.array_equal(f["data"][()], np.stack(FRAMES[:2]))


def test_a_stop_waits_for_the_message_being_stored(tmp_path, monkeypatch):
    """SIGTERM or Ctrl-C while an image is stored stops the command only once it is stored and
    said: an image printed is an image saved (the command above stops on seeing a line)."""
    stop = consume_module._Stop()
    monkeypatch.setattr(consume_module, "_STOP", stop)
    events: list[str] = []
    take = consume_module.SeriesStore.take

    def slow_take(self, message):  # the stop comes in the middle of storing image 1
        if getattr(message, "msg_number", None) == 1:
            stop.handle(signal.SIGTERM, None)
        take(self, message)
        events.append(f"stored {message.msg_number}")

    class Lines(io.StringIO):
        def write(self, text: str) -> int:
            if text.strip():
                events.append(text.split(" frame")[0])
            return super().write(text)

    monkeypatch.setattr(consume_module.SeriesStore, "take", slow_take)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDTIMEO, 20000)  # a consumer that never comes fails the test
    port = push.bind_to_random_port("tcp://127.0.0.1")
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(consume(str(port), tmp_path, None, 5.0, Lines()))
    )
    thread.start()
    try:
        for parts in series(4)[:3]:  # the header and two images: image 2 comes after the stop
            push.send_multipart(parts)
        thread.join(20)
    finally:
        push.close(linger=0)
        ctx.term()
    assert result == [0]
    said = [e for e in events if not e.startswith("consuming")]
    assert said[:4] == ["stored 0", "header 0 series 4 file -", "stored 1", "image 1"], said
    assert said[-1].startswith("2 messages, 1 images")  # stopped before image 2
    with h5py.File(tmp_path / "series_4.h5", "r") as f:
        assert np.array_equal(f["data"][()], FRAMES[:1])


def test_an_endpoint_zeromq_refuses_is_exit_status_2():
    result = subprocess.run(
        [sys.executable, "-m", "tango_receiver.cli", "consume", "tcp://no port"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot connect to 'tcp://no port'" in result.stderr
