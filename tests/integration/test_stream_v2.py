"""DECTRIS stream v2 (CBOR): a real capture, DECTRIS' multichannel test set, simulated series."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from conftest import make_config, run_series, run_with_consumer, wait_series_done
from tango_receiver.codecs import cbor_v2
from tango_receiver.config import parse_entry
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.stream_v2 import capture_v2, stream_v2_series


def planes(message: bytes) -> dict[str, np.ndarray]:
    """Reference decode, independent of the receiver: every channel of an image message."""
    msg = cbor_v2.decode(message)
    return {name: cbor_v2.to_numpy(value) for name, value in msg["data"].items()}


def test_captured_series_bit_exact(tmp_path, sender, fixtures_dir):
    target = tmp_path / "captured_v2.h5"
    messages = capture_v2(fixtures_dir / "captured" / "dectris-stream-v2-series.zip", str(target))
    assert len(messages) == 12
    expected = [planes(m[0])["threshold_1"] for m in messages[1:-1]]
    config = make_config(sender.port, tmp_path, "DectrisStream2")
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert (snap.frames_received, snap.frames_written, snap.frames_invalid) == (10, 10, 0)
    assert snap.series_id == "16" and snap.series_complete
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (10, 1065, 1030)
        for i, frame in enumerate(expected):
            assert np.array_equal(data[i], frame)
        meta = f["/entry/instrument/detector/metadata"]
        assert meta["detector_description"][()] == b"Dectris EIGER1 Si 1M"
        assert meta["user_data/file_prefix"][()] == b"lyso1/dir/file"


def test_multichannel_dectris_set(tmp_path, sender, fixtures_dir):
    """EIGER2 500K, three channels; names from the message, never guessed."""
    folder = fixtures_dir / "dectris-stream-v2-r500k-bslz4-16bit"
    images = [(folder / f"{i:06d}.cbor").read_bytes() for i in range(1, 11)]
    end = (folder / "000011.cbor").read_bytes()
    first = cbor_v2.decode(images[0])
    names = list(first["data"])
    assert names == ["threshold_1", "threshold_2", "difference"]
    start = next(
        stream_v2_series(
            {n: [np.zeros((514, 1030), np.uint16)] for n in names},
            str(tmp_path / "r500k.h5"),
            series_id=first["series_id"],
            count=10,
        )
    )
    target = tmp_path / "r500k.h5"
    config = make_config(
        sender.port, tmp_path, "DectrisStream2", dset_name="/entry/instrument/eiger2/data"
    )
    snap, forwarded = run_with_consumer(config, sender, [start] + [[m] for m in images] + [[end]])
    assert (snap.frames_received, snap.frames_written, snap.frames_invalid) == (10, 10, 0)
    with h5py.File(target, "r") as f:
        assert list(f["/entry/instrument/eiger2"].attrs["channels"]) == names
        for name in names:
            assert f[f"/entry/data/{name}"].shape == (10, 514, 1030)
        for i, message in enumerate(images):
            for name, plane in planes(message).items():
                assert np.array_equal(f[f"/entry/instrument/eiger2/data_{name}"][i], plane)
    head = json.loads(forwarded[1][0])
    assert [c["name"] for c in head["channels"]] == names and len(forwarded[1]) == 4


def test_simulated_series_with_lz4_and_raw_planes(tmp_path, sender):
    frames = synthetic_frames(4, (20, 24), "uint32", rate=3.0)
    for compression in ("bslz4", "lz4", None):
        target = tmp_path / f"sim_{compression}.h5"
        config = make_config(sender.port, tmp_path, "DectrisStream2")
        receiver, snap = run_series(
            config,
            sender,
            stream_v2_series({"threshold_1": frames}, str(target), compression=compression),
        )
        receiver.close()
        assert (snap.frames_written, snap.frames_invalid) == (4, 0), compression
        with h5py.File(target, "r") as f:
            assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_garbage_cbor_is_counted(tmp_path, sender):
    frames = synthetic_frames(2, (20, 24), "uint32", rate=3.0)
    msgs = list(stream_v2_series({"threshold_1": frames}, str(tmp_path / "g.h5")))
    bad = [
        [b"\xd9\xd9\xf7\xff\xff"],
        [msgs[1][0][:50]],
        [cbor_v2.encode({"type": "image"})],
        [cbor_v2.encode({"type": "image", "image_id": 9, "data": {"x": 1}})],
    ]
    receiver, snap = run_series(
        make_config(sender.port, tmp_path, "DectrisStream2"), sender, [msgs[0], *bad, *msgs[1:]]
    )
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid) == (2, 4)


def test_simulator_and_receiver_meet_on_the_default_port(tmp_path):
    """Neither names a port: `simulate stream2` sends where a DectrisStream2 entry looks."""
    config = parse_entry(
        "defaults",
        {
            "class": "DectrisStream2",
            "upstream": ["tcp://127.0.0.1"],
            "data_port": 0,
            "data_host": "127.0.0.1",
            "write_roots": [str(tmp_path)],
        },
    )
    target = tmp_path / "defaults.h5"
    with Receiver(config) as receiver:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tango_receiver.cli",
                "simulate",
                "stream2",
                "--frames",
                "3",
                "--shape",
                "16x24",
                "--dtype",
                "uint16",
                "--filename",
                str(target),
                "--quiet",
                "--timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        snap = wait_series_done(receiver)
    assert snap.frames_written == 3 and snap.series_complete
    assert "tcp://127.0.0.1:31001" in snap.upstream
