"""`tango-receiver simulate` says what it sends: the log line and the frames agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zmq

from conftest import free_port
from tango_receiver.codecs import cbor_v2


def simulate(*args: str) -> tuple[str, list[list[bytes]]]:
    """Run the command against a PULL socket; (its log, the messages it sent)."""
    port = free_port()
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.connect(f"tcp://127.0.0.1:{port}")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tango_receiver.cli",
            "simulate",
            *args,
            "--port",
            str(port),
            "--frames",
            "2",
            "--quiet",
            "--timeout",
            "20",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"LOG_LEVEL": "INFO"},
    )
    try:
        messages = []
        while len(messages) < 4 and pull.poll(30000):  # header, 2 images, end
            messages.append(pull.recv_multipart())
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        pull.close(linger=0)
        ctx.term()
    assert process.returncode == 0, err
    return err, messages


@pytest.mark.parametrize("profile", ["pilatus-2m", "pilatus-6m"])
def test_a_profile_logs_the_frame_it_sends(profile):
    log, messages = simulate(profile)
    rows, cols = {"pilatus-2m": (1679, 1475), "pilatus-6m": (2527, 2463)}[profile]
    assert f"{rows}x{cols} int32" in log and "1065x1030" not in log
    head = json.loads(messages[1][0])
    assert (head["shape"], head["type"]) == ([rows, cols], "int32")


def test_stream2_defaults_to_the_eiger2_sim_frame():
    log, messages = simulate("stream2")
    assert "514x1030 uint16" in log
    start = cbor_v2.decode(messages[0][0])
    assert (start["image_size_y"], start["image_size_x"]) == (514, 1030)
    plane = cbor_v2.to_numpy(cbor_v2.decode(messages[1][0])["data"]["threshold_1"])
    assert plane.shape == (514, 1030) and plane.dtype == np.uint16


def test_explicit_shape_and_dtype_are_said_and_sent():
    log, messages = simulate("pilatus-2m", "--shape", "20x30", "--dtype", "int32")
    assert "20x30 int32" in log
    assert json.loads(messages[1][0])["shape"] == [20, 30]
