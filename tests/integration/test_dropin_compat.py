"""The scenarios of the suite of the system this replaces (MAX IV streaming-receiver), ported.

Each entry is in the existing deployments' form (``dcu_host_purple``, no ``compress`` key), each
sender speaks as that suite's senders do (stream1.py, the capture replays), and each check reads
the file and the REST answers the way an existing reader does: its paths, dtypes and shapes, the
pickled parts of ``/last_frame``, plain h5py. Frames are smaller than that suite's 2000 x 4000.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bitshuffle
import cbor2
import h5py
import hdf5plugin  # noqa: F401
import httpx
import numpy as np
import pytest

from tango_receiver.api import start_sidecar
from tango_receiver.config import parse_entry
from tango_receiver.detector import detector_for
from tango_receiver.engine.receiver import Receiver
from tango_receiver.engine.writer import SeriesWriter
from tango_receiver.messages import Channel, Header, Image
from tango_receiver.sim.eiger_v1 import capture_v1
from tango_receiver.sim.internal import encoded_series
from tango_receiver.sim.lambda_ import ModuleSenders
from tango_receiver.sim.sender import Sender
from tango_receiver.sim.stream_v2 import capture_v2

SHAPE = (20, 40)  # the suite's Zyla frames are (2000, 4000) uint16
FRAMES = 10
ZYLA = "/entry/instrument/zyla"


@contextmanager
def streaming_receiver(
    entry: dict[str, Any], root: Path
) -> Iterator[tuple[Receiver, httpx.Client]]:
    """A receiver of an entry in the existing deployments' form, with its REST sidecar."""
    config = parse_entry(
        "dropin",
        entry
        | {
            "write_roots": [str(root)],
            "data_port": 0,
            "data_host": "127.0.0.1",
            "gap_timeout_s": 0.5,
        },
    )
    receiver = Receiver(config)
    try:
        receiver.start()
        sidecar = start_sidecar(receiver, "127.0.0.1", 0)
        try:
            with httpx.Client(base_url=sidecar.url, timeout=10) as http:
                yield receiver, http
        finally:
            sidecar.stop()
    finally:
        receiver.close()


def wait_frames(http: httpx.Client, frames: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while http.get("/received_frames").json()["value"] < frames:
        assert time.monotonic() < deadline, "frames never all received"
        time.sleep(0.05)


def wait_idle(http: httpx.Client, frames: int, timeout_s: float = 20.0) -> None:
    """As the suite waits: /received_frames up to ``frames``, then /status no longer running."""
    wait_frames(http, frames, timeout_s)
    deadline = time.monotonic() + timeout_s
    while (state := http.get("/status").json()["state"]) == "running":
        assert time.monotonic() < deadline, "series never ended"
        time.sleep(0.05)
    assert state == "idle"


def zyla_frames(count: int = FRAMES) -> list[np.ndarray]:
    """Sparse uint16 frames, as the suite's ``stream_stins`` makes them (20 random counts)."""
    rng = random.Random(24)
    frames = []
    for _ in range(count):
        img = np.zeros(SHAPE, np.uint16)
        for _ in range(20):
            img[rng.randrange(SHAPE[0]), rng.randrange(SHAPE[1])] = rng.randint(1, 10)
        frames.append(img)
    return frames


def stins(
    frames: list[np.ndarray],
    filename: str,
    meta: dict | None = None,
    extra: list[dict] | None = None,
) -> list[list[bytes]]:
    """stream1.py's series: raw frames, ``"compression": "none"``, ``extra`` fields per image."""
    extra = extra or [{}] * len(frames)
    images = [
        ({"shape": list(f.shape), "type": "uint16", "compression": "none"} | more, [f.tobytes()])
        for f, more in zip(frames, extra, strict=False)
    ]
    return list(encoded_series(images, filename, meta))


def entry(**more: Any) -> dict[str, Any]:
    return {"class": "Detector", "dcu_host_purple": "127.0.0.1", "dset_name": f"{ZYLA}/data"} | more


def plain_h5py_read(path: Path, dataset: str) -> bytes:
    """The dataset's bytes as a reader without hdf5plugin (and no filter plugins) gets them."""
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    code = (
        "import sys, h5py; d = h5py.File(sys.argv[1], 'r')[sys.argv[2]][()]; "
        "assert 'hdf5plugin' not in sys.modules; sys.stdout.buffer.write(d.tobytes())"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(path), dataset],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


# --- test_basic, test_order, test_lb: raw frames as they came ------------------------------
def test_basic_raw_frames_as_they_came_and_last_frame_pickle(tmp_path, sender):
    frames = zyla_frames()
    target = tmp_path / "test.h5"
    with streaming_receiver(entry(dcu_port_purple=sender.port), tmp_path) as (receiver, http):
        sender.send(stins(frames, str(target)))
        wait_idle(http, FRAMES)
        header, blob, *rest = pickle.loads(http.get("/last_frame").content)
        http.post("/downsample", params={"value": 2})
        binned_header, binned = pickle.loads(http.get("/last_frame").content)
    assert rest == [] and header["compression"] == "none" and header["type"] == "uint16"
    img = np.frombuffer(blob, dtype=header["type"]).reshape(header["shape"])
    # binned for live view only as the original bins: uint16, the mean truncated
    assert binned_header["shape"] == [10, 20] and binned.dtype == np.uint16
    expected = frames[-1].reshape(10, 2, 20, 2).mean(axis=(1, 3)).astype(np.uint16)
    assert np.array_equal(binned, expected)
    with h5py.File(target, "r") as f:
        data = f[f"{ZYLA}/data"]
        assert data.shape == (FRAMES, *SHAPE) and data.dtype == np.uint16
        assert data.compression is None and not data._filters  # as they came, unfiltered
        seq = f[f"{ZYLA}/sequence_number"]
        assert seq.dtype == np.uint32 and list(seq[()]) == list(range(FRAMES))
        assert np.array_equal(img, data[-1]) and not np.array_equal(img, data[-2])
    assert plain_h5py_read(target, f"{ZYLA}/data") == np.stack(frames).tobytes()


def test_compressing_stays_one_key_away(tmp_path, sender):
    frames = zyla_frames(3)
    target = tmp_path / "test.h5"
    compressing = entry(dcu_port_purple=sender.port, compress=True)
    with streaming_receiver(compressing, tmp_path) as (_, http):
        sender.send(stins(frames, str(target)))
        wait_idle(http, 3)
    with h5py.File(target, "r") as f:
        assert "32008" in f[f"{ZYLA}/data"]._filters  # bitshuffle-LZ4
        assert np.array_equal(f[f"{ZYLA}/data"][()], np.stack(frames))


def test_compress_defaults_to_what_existing_entries_stored(tmp_path):
    """No ``compress`` key: raw, as before; the PilatusPipeline compressed unless told not to."""
    base = {"dcu_host_purple": "127.0.0.1", "write_roots": [str(tmp_path)]}
    assert not detector_for(parse_entry("zyla", base | {"class": "Detector"})).compress
    assert not detector_for(parse_entry("orca", base | {"pipeline": "OrcaPipeline"})).compress
    pilatus = base | {"pipeline": "PilatusPipeline"}
    assert detector_for(parse_entry("pilatus", pilatus)).compress
    assert not detector_for(parse_entry("pilatus", pilatus | {"compress": False})).compress


def test_out_of_order(tmp_path, sender):
    frames = [np.zeros(SHAPE, np.uint16) for _ in range(FRAMES)]
    for i, frame in enumerate(frames):
        frame[i, i] = 1
    target = tmp_path / "test.h5"
    header, *images, end = stins(frames, str(target))
    random.Random(7).shuffle(images)
    with streaming_receiver(entry(dcu_port_purple=sender.port), tmp_path) as (_, http):
        sender.send([header, *images, end])
        wait_idle(http, FRAMES)
    with h5py.File(target, "r") as f:
        assert list(f[f"{ZYLA}/sequence_number"][()]) == list(range(FRAMES))
        for i in range(FRAMES):
            assert f[f"{ZYLA}/data"][i][i, i] == 1


def test_load_balance_over_two_endpoints(tmp_path):
    """``dcu_host_purple`` a list: one connection per host, the same port, load-balanced."""
    frames = zyla_frames()
    target = tmp_path / "test.h5"
    with (
        Sender(host="0.0.0.0", timeout_s=30) as sender,
        streaming_receiver(
            entry(dcu_host_purple=["127.0.0.1", "127.0.0.2"], dcu_port_purple=sender.port), tmp_path
        ) as (receiver, http),
    ):
        assert len(receiver.detector.endpoints()) == 2
        sender.send(stins(frames, str(target)))
        wait_idle(http, FRAMES)
    with h5py.File(target, "r") as f:
        assert f[f"{ZYLA}/data"].shape == (FRAMES, *SHAPE)
        assert list(f[f"{ZYLA}/sequence_number"][()]) == list(range(FRAMES))
        assert np.array_equal(f[f"{ZYLA}/data"][()], np.stack(frames))


# --- test_discard ---------------------------------------------------------------------------
def test_discard(tmp_path, sender):
    frames = zyla_frames()
    target = tmp_path / "test.h5"
    extra = [{} if 3 <= i < 7 else {"discard": True} for i in range(FRAMES)]
    with streaming_receiver(entry(dcu_port_purple=sender.port), tmp_path) as (receiver, http):
        sender.send(stins(frames, str(target), extra=extra))
        wait_idle(http, FRAMES)
        snap = receiver.snapshot()
    assert (snap.frames_received, snap.frames_written) == (FRAMES, 4)
    assert snap.series_complete and not snap.alarm  # a discard is asked for, not a loss
    with h5py.File(target, "r") as f:
        assert f[f"{ZYLA}/data"].shape == (7 - 3, *SHAPE)
        assert list(f[f"{ZYLA}/sequence_number"][()]) == list(range(3, 7))
        assert np.array_equal(f[f"{ZYLA}/data"][()], np.stack(frames[3:7]))


def test_save_raw_false_in_the_metadata_part_writes_no_file(tmp_path, sender):
    """Where the original reads ``save_raw``: the header's second part."""
    target = tmp_path / "test.h5"
    with streaming_receiver(entry(dcu_port_purple=sender.port), tmp_path) as (receiver, http):
        sender.send(stins(zyla_frames(3), str(target), meta={"save_raw": False}))
        wait_idle(http, 3)
        messages = receiver.snapshot().messages
    assert not target.exists()
    assert any("no file written: the header says save_raw: false" in m for m in messages)


# --- test_nested ----------------------------------------------------------------------------
def test_nested_header_fields_in_the_detector_group(tmp_path, sender):
    """Header fields where the original wrote them, and beside them the ``metadata/`` copy; a
    field named like the frames or ``sequence_number`` stays in ``metadata/`` only."""
    target = tmp_path / "test.h5"
    meta = {"top_level": {"nest": 42}, "data": "clash", "sequence_number": -1, "exptime": 0.5}
    with streaming_receiver(entry(dcu_port_purple=sender.port), tmp_path) as (_, http):
        sender.send(stins(zyla_frames(), str(target), meta=meta))
        wait_idle(http, FRAMES)
    with h5py.File(target, "r") as f:
        assert f[f"{ZYLA}/top_level/nest"][()] == 42
        assert f[f"{ZYLA}/exptime"][()] == 0.5
        assert f[f"{ZYLA}/metadata/top_level/nest"][()] == 42
        link = f[ZYLA].get("top_level", getlink=True)
        assert isinstance(link, h5py.SoftLink) and link.path == f"{ZYLA}/metadata/top_level"
        assert f[f"{ZYLA}/data"].shape == (FRAMES, *SHAPE)
        assert list(f[f"{ZYLA}/sequence_number"][()]) == list(range(FRAMES))
        assert f[f"{ZYLA}/metadata/data"][()] == b"clash"
        assert f[f"{ZYLA}/metadata/sequence_number"][()] == -1


def test_a_frame_channel_named_like_a_header_field_takes_the_name(tmp_path):
    """Xspress3-like companions sit beside the frames: the frames win the name, the header
    field stays in ``metadata/``."""
    path = tmp_path / "x.h5"
    header = Header(msg_number=0, filename=str(path), metadata={"ocr": 7, "gain": 2})
    writer = SeriesWriter(header, f"{ZYLA}/data", [tmp_path], flush_interval_s=60.0)
    pixels, ocr = np.ones((2, 3), np.uint32), np.array([0.5, 0.25])
    writer.write(
        Image(
            msg_number=1,
            frame=0,
            channels=[
                Channel("data", pixels.shape, "uint32", "none", pixels.tobytes()),
                Channel("ocr", ocr.shape, "float64", "none", ocr.tobytes()),
            ],
        )
    )
    writer.close(True)
    with h5py.File(path, "r") as f:
        assert list(f[f"{ZYLA}/ocr"][0]) == [0.5, 0.25]
        assert f[f"{ZYLA}/metadata/ocr"][()] == 7 and f[f"{ZYLA}/gain"][()] == 2


# --- test_lambda ----------------------------------------------------------------------------
def test_lambda_modules_in_the_merged_shape(tmp_path):
    """Each module's header names the merged frame ``[4, H, W]`` in chunks ``[1, H, W]``."""
    modules, rows, cols = 4, 8, 12
    planes = [
        np.arange(m * 1000, m * 1000 + rows * cols, dtype=np.uint16).reshape(rows, cols)
        for m in range(modules)
    ]
    frames = [np.stack(planes) + i for i in range(FRAMES)]
    target = tmp_path / "test.h5"
    merged = {"shape": [modules, rows, cols], "chunks": [1, rows, cols]}
    streams = []
    for m in range(modules):
        meta = {"x": 0, "y": m, "rotation": 90 * m, "full_shape": [2695, 2696]}
        streams.append(
            stins([f[m] for f in frames], str(target), meta=meta, extra=[merged] * FRAMES)
        )
    with (
        ModuleSenders([0] * modules, timeout_s=30) as senders,
        streaming_receiver(
            {
                "class": "Lambda",
                "dcu_host_purple": ["127.0.0.1"] * modules,
                "dcu_port_purple": [s.port for s in senders.senders],
                "dset_name": "/entry/instrument/lambda/data",
            },
            tmp_path,
        ) as (_, http),
    ):
        senders.send(streams)
        wait_idle(http, FRAMES)
        header, *blobs = pickle.loads(http.get("/last_frame").content)
    det = "/entry/instrument/lambda"
    with h5py.File(target, "r") as f:
        data = f[f"{det}/data"]
        assert data.shape == (FRAMES, modules, rows, cols) and data.dtype == np.uint16
        assert np.array_equal(data[()], np.stack(frames))  # module m's blob at [n, m]
        assert list(f[f"{det}/sequence_number"][()]) == list(range(FRAMES))
        assert list(f[f"{det}/x"][()]) == [0] * modules and list(f[f"{det}/y"][()]) == [0, 1, 2, 3]
        assert list(f[f"{det}/rotation"][()]) == [0, 90, 180, 270]
        assert list(f[f"{det}/full_shape"][()]) == [2695, 2696]
    assert header["shape"] == [modules, rows, cols] and header["compression"] == "none"
    assert np.frombuffer(b"".join(blobs), np.uint16).tobytes() == frames[-1].tobytes()


# --- test_legacy: the EIGER capture, stream v1 ------------------------------------------------
def test_eiger_legacy_capture(tmp_path, sender, fixtures_dir):
    capture = fixtures_dir / "captured" / "eiger-stream-v1-eiger1-1m.zip"
    target = tmp_path / "test.h5"
    with streaming_receiver(
        {
            "class": "Eiger",
            "dcu_host_purple": "127.0.0.1",
            "dcu_port_purple": sender.port,
            "dset_name": "/entry/instrument/eiger/data",
        },
        tmp_path,
    ) as (receiver, http):
        # as the suite replays it: no dseries_end (the capture has none), then the capture
        # again without a filename, whose header closes the first series' file
        sender.send(capture_v1(capture, str(target))[:-1])
        wait_frames(http, 9)
        sender.send(capture_v1(capture, "")[:-1])
        deadline = time.monotonic() + 20
        while receiver.snapshot().series_count < 2:
            assert time.monotonic() < deadline, "the second header never came"
            time.sleep(0.05)
        wait_frames(http, 9)
        header, blob = pickle.loads(http.get("/last_frame").content)
        messages = receiver.snapshot().messages
    assert any("no file written: the header names no file" in m for m in messages)
    assert header["compression"] == "bslz4" and header["type"] == "uint32"
    img = bitshuffle.decompress_lz4(
        np.frombuffer(blob, np.uint8, offset=12), tuple(header["shape"]), np.dtype(header["type"])
    )
    config = json.loads(capture_v1(capture)[0][1])
    det = "/entry/instrument/eiger"
    with h5py.File(target, "r") as f:
        assert f[f"{det}/data"].shape == (9, 1065, 1030)
        assert list(f[f"{det}/sequence_number"][()]) == list(range(9))
        assert np.array_equal(img, f[f"{det}/data"][-1])
        assert not np.array_equal(img, f[f"{det}/data"][-2])
        assert f[f"{det}/count_time"][()] == config["count_time"]
        assert f[f"{det}/photon_energy"][()] == config["photon_energy"]
        assert f[f"{det}/metadata/config/count_time"][()] == config["count_time"]


# --- test_stream2: the stream v2 capture, user_data as the suite's sender puts it -------------
def as_suite_sends(start: bytes, user_data: bytes) -> bytes:
    """The start message re-encoded as the suite's replay does: decoded by cbor2 and dumped
    again (no self-describe tag), ``user_data`` a CBOR byte string."""
    msg = dict(cbor2.loads(start))
    msg["user_data"] = user_data
    return cbor2.dumps(msg)


def test_stream2_capture_user_data_bytes(tmp_path, sender, fixtures_dir):
    capture = fixtures_dir / "captured" / "dectris-stream-v2-series.zip"
    target = tmp_path / "test.h5"
    messages = capture_v2(capture, "")
    user = json.loads(cbor2.loads(messages[0][0])["user_data"]) | {"filename": str(target)}
    messages[0] = [as_suite_sends(messages[0][0], json.dumps(user).encode())]
    with streaming_receiver(
        {
            "class": "DectrisStream2",
            "dcu_host_purple": "127.0.0.1",
            "dcu_port_purple": sender.port,
            "dset_name": "/entry/instrument/eiger/data",
        },
        tmp_path,
    ) as (_, http):
        sender.send(messages)
        wait_idle(http, FRAMES)
        header, blob = pickle.loads(http.get("/last_frame").content)
    img = bitshuffle.decompress_lz4(
        np.frombuffer(blob, np.uint8, offset=12), tuple(header["shape"]), np.dtype(header["type"])
    )
    det = "/entry/instrument/eiger"
    with h5py.File(target, "r") as f:
        assert f[f"{det}/data"].shape == (FRAMES, 1065, 1030)
        assert list(f[f"{det}/sequence_number"][()]) == list(range(FRAMES))
        assert np.array_equal(img, f[f"{det}/data"][-1])
        assert not np.array_equal(img, f[f"{det}/data"][-2])
        assert f[f"{det}/count_time"][()] == pytest.approx(0.9999999)
        assert f[f"{det}/threshold_1"][()] == 4000.0  # threshold_energy's entries, as before
        assert f[f"{det}/metadata/user_data/sample_name"][()] == b"lyso"


def test_stream2_series_that_cannot_be_written_says_why(tmp_path, sender, fixtures_dir, caplog):
    capture = fixtures_dir / "captured" / "dectris-stream-v2-series.zip"
    messages = capture_v2(capture, "")
    messages[0] = [as_suite_sends(messages[0][0], b"{not json")]
    caplog.set_level(logging.INFO)
    with streaming_receiver(
        {"class": "DectrisStream2", "dcu_host_purple": "127.0.0.1", "dcu_port_purple": sender.port},
        tmp_path,
    ) as (receiver, http):
        sender.send(messages)
        wait_idle(http, FRAMES)
        messages = receiver.snapshot().messages
    why = "no file written: user_data is not JSON"
    assert any(why in m for m in messages)
    assert any(why in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    assert not list(tmp_path.glob("*.h5"))
