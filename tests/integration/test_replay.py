"""`tango-receiver replay` sends a real capture through a socket: a receiver of its class
stores every frame as captured."""

from __future__ import annotations

import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import free_port, make_config, wait_series_done
from tango_receiver.codecs import cbor_v2
from tango_receiver.codecs.bslz4 import decode_chunk
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.replay import load_capture

DSET = "/entry/instrument/detector/data"


def v1_frames(messages: list[list[bytes]]) -> dict[str, list[np.ndarray]]:
    return {DSET: [decode_chunk(m[2], (1065, 1030), np.dtype("<u4")) for m in messages[1:-1]]}


def v2_frames(messages: list[list[bytes]]) -> dict[str, list[np.ndarray]]:
    images = [cbor_v2.decode(m[0])["data"] for m in messages[1:-1]]
    names = list(images[0])
    where = {names[0]: DSET} if len(names) == 1 else {n: f"{DSET}_{n}" for n in names}
    return {where[n]: [cbor_v2.to_numpy(image[n]) for image in images] for n in names}


@pytest.mark.parametrize(
    "capture, cls, expected",
    [
        ("captured/eiger-stream-v1-eiger1-1m.zip", "Eiger", v1_frames),
        ("captured/dectris-stream-v2-series.zip", "DectrisStream2", v2_frames),
        ("dectris-stream-v2-r500k-bslz4-16bit", "DectrisStream2", v2_frames),
    ],
)
def test_replay_is_stored_bit_exact(tmp_path, fixtures_dir, capture, cls, expected):
    port, target = free_port(), tmp_path / "replayed.h5"
    reference = expected(load_capture(fixtures_dir / capture).messages)
    with Receiver(make_config(port, tmp_path, cls)) as receiver:
        receiver.start()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tango_receiver.cli",
                "replay",
                str(fixtures_dir / capture),
                "--port",
                str(port),
                "--filename",
                str(target),
                "--quiet",
                "--timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr
        frames = len(next(iter(reference.values())))
        assert f"{frames} images" in result.stderr and f"read by class {cls}" in result.stderr
        snap = wait_series_done(receiver)
    # not series_complete: the v1 capture's header announces 100000 images, it holds 9
    assert (snap.frames_written, snap.frames_invalid) == (frames, 0)
    with h5py.File(target, "r") as f:
        for dset, planes in reference.items():
            assert f[dset].shape[0] == frames
            for i, plane in enumerate(planes):
                assert np.array_equal(f[dset][i], plane), (dset, i)


def test_replay_refuses_what_is_not_a_capture(tmp_path):
    (tmp_path / "notes.txt").write_text("not a capture")
    result = subprocess.run(
        [sys.executable, "-m", "tango_receiver.cli", "replay", str(tmp_path / "notes.txt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "not a capture" in result.stderr
