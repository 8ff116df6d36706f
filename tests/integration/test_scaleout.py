"""Scale-out: part files of a split series stitched into a master file with a virtual dataset.

Part files are written by the engine's own writer (or by real receiver processes), so a change
of the file layout breaks these tests rather than the stitching in production.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import yaml
import zmq
from zmq.utils.monitor import recv_monitor_message

from conftest import Consumer
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.config import ReceiverConfig
from tango_receiver.engine.ordering import Ordering, OrderingCounts
from tango_receiver.engine.writer import SeriesWriter, part_filename
from tango_receiver.messages import Channel, Header, Image, SeriesEnd
from tango_receiver.scaleout.stitch import MISSING, Run, StitchError, add_parser, frame_runs, stitch
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender

DSET = "/entry/instrument/detector/data"
UINT16_MISSING = np.iinfo(np.uint16).max


def write_part(
    path: Path,
    frames: dict[int, dict[str, np.ndarray]],
    complete: bool = True,
    metadata: dict | None = None,
) -> Path:
    """A part file as a receiver writes it: frame number -> {channel: pixels}, in that order."""
    header = Header(msg_number=0, filename=str(path), metadata=metadata or {}, series_id=7)
    writer = SeriesWriter(header, DSET, [path.parent], flush_interval_s=60.0)
    for i, (number, channels) in enumerate(frames.items()):
        writer.write(
            Image(
                msg_number=i + 1,
                frame=number,
                channels=[
                    Channel(name, pixels.shape, pixels.dtype.name, "bslz4", encode_chunk(pixels))
                    for name, pixels in channels.items()
                ],
            )
        )
    writer.close(complete)
    return path


def split(frames: list[np.ndarray], numbers: list[int]) -> dict[int, dict[str, np.ndarray]]:
    return {n: {"data": frames[n]} for n in numbers}


def test_part_filename_puts_the_suffix_before_the_extension():
    assert part_filename("/data/scan_001.h5", "_part1") == "/data/scan_001_part1.h5"
    assert part_filename("/data/scan.nxs", "-b") == "/data/scan-b.nxs"
    assert part_filename("/data/scan", "_p0") == "/data/scan_p0"
    assert part_filename("/data/scan_001.h5", "") == "/data/scan_001.h5"


def test_frame_runs_merge_strided_stretches_and_skip_frames_already_taken():
    taken = np.zeros(12, dtype=bool)
    taken[4] = True  # held by an earlier part
    runs = list(frame_runs(np.array([0, 2, 4, 6, 8, 9, 11, 3, 10]), taken))
    assert runs == [Run(0, 0, 2, 2), Run(3, 6, 2, 2), Run(5, 9, 2, 2), Run(7, 3, 7, 2)]
    assert list(np.flatnonzero(~taken)) == [1, 5, 7]
    assert list(frame_runs(np.array([3, 3]), np.zeros(4, dtype=bool))) == [Run(0, 3, 1, 1)]


def test_master_reads_back_in_frame_order_with_missing_frames_reported(tmp_path):
    frames = synthetic_frames(10, (24, 32), "uint16", rate=3.0)
    # round-robin as ZMQ deals it, frame 5 lost on the way, frames 10 and 11 never sent
    # a 2-D header field (a flatfield) is linked into the detector group: never a frame dataset
    part0 = write_part(
        tmp_path / "s_part0.h5",
        split(frames, [0, 2, 4, 6, 8]),
        metadata={"sample": "lysozyme", "flatfield": np.ones((24, 32))},
    )
    part1 = write_part(tmp_path / "s_part1.h5", split(frames, [1, 3, 7, 9]))
    result = stitch(tmp_path / "s.h5", [part0, part1], nframes=12)

    assert result.missing == [5, 10, 11] and result.nframes == 12 and result.duplicates == 0
    assert result.mappings == 3  # 0..8 step 2 | 1, 3 | 7, 9: runs, not one mapping per frame
    with h5py.File(tmp_path / "s.h5", "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (12, 24, 32) and data.dtype == np.uint16 and data.is_virtual
        assert len(data.virtual_sources()) == 3
        for n in range(12):
            expected = np.full((24, 32), UINT16_MISSING) if n in (5, 10, 11) else frames[n]
            assert np.array_equal(data[n], expected), f"frame {n}"
        det = f["/entry/instrument/detector"]
        assert list(det[MISSING][()]) == [5, 10, 11]
        assert list(det["sequence_number"][()]) == list(range(12))
        assert det["metadata/sample"][()] == b"lysozyme" and det["sample"][()] == b"lysozyme"
        assert det["flatfield"].shape == (24, 32)
        assert det.attrs["NX_class"] == "NXdetector"
        entry = f["entry"]
        assert entry.attrs["frames_missing"] == 3 and entry.attrs["frames_written"] == 9
        assert not entry.attrs["series_complete"]
        assert list(entry.attrs["parts"]) == ["s_part0.h5", "s_part1.h5"]
        assert f["/entry/data"].attrs["signal"] == "data"


def test_master_moves_with_its_parts(tmp_path):
    frames = synthetic_frames(4, (8, 8), "uint16", rate=3.0)
    run = tmp_path / "run"
    run.mkdir()
    parts = [
        write_part(run / "a.h5", split(frames, [0, 1])),
        write_part(run / "b.h5", split(frames, [2, 3])),
    ]
    result = stitch(run / "master.h5", parts)
    assert result.missing == [] and result.mappings == 2
    moved = shutil.move(run, tmp_path / "moved")
    with h5py.File(Path(moved) / "master.h5", "r") as f:
        assert f["entry"].attrs["series_complete"]
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_multichannel_parts_keep_one_virtual_dataset_per_channel(tmp_path):
    low = synthetic_frames(4, (8, 12), "uint32", seed=1)
    high = synthetic_frames(4, (8, 12), "uint32", seed=2)
    parts = [
        write_part(
            tmp_path / f"p{k}.h5",
            {n: {"threshold_1": low[n], "threshold_2": high[n]} for n in range(k, 4, 2)},
        )
        for k in (0, 1)
    ]
    assert stitch(tmp_path / "m.h5", parts).missing == []
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert np.array_equal(f["/entry/instrument/detector/data_threshold_1"][()], np.stack(low))
        assert np.array_equal(f["/entry/data/threshold_2"][()], np.stack(high))
        assert f["/entry/data"].attrs["signal"] == "threshold_1"


def test_parts_of_different_series_are_refused_and_no_master_is_left(tmp_path):
    a = write_part(tmp_path / "a.h5", {0: {"data": np.zeros((8, 8), np.uint16)}})
    b = write_part(tmp_path / "b.h5", {1: {"data": np.zeros((8, 9), np.uint16)}})
    with pytest.raises(StitchError, match=r"b\.h5.*not parts of one series"):
        stitch(tmp_path / "m.h5", [a, b])
    with pytest.raises(StitchError, match="beyond the 1 frames given"):
        stitch(
            tmp_path / "m.h5",
            [a, write_part(tmp_path / "c.h5", {3: {"data": np.zeros((8, 8), np.uint16)}})],
            1,
        )
    assert not (tmp_path / "m.h5").exists()


def test_cli_exit_status_says_whether_frames_are_missing(tmp_path):
    frames = synthetic_frames(3, (8, 8), "uint16")
    parts = [
        write_part(tmp_path / "a.h5", split(frames, [0])),
        write_part(tmp_path / "b.h5", split(frames, [1, 2])),
    ]
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))

    def run(*argv: object) -> int:
        args = parser.parse_args([str(a) for a in argv])
        return args.fn(args)

    assert run("stitch", tmp_path / "whole.h5", *parts) == 0
    assert run("stitch", tmp_path / "short.h5", *parts, "--frames", 5) == 1
    assert run("stitch", tmp_path / "whole.h5", *parts) == 2  # exists: never overwritten
    with h5py.File(tmp_path / "short.h5", "r") as f:
        assert list(f["/entry/instrument/detector/missing_frames"][()]) == [3, 4]


# --- two receiver processes pulling from one upstream ------------------------------------------

RECEIVER_START_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handshakes:
    """Counts the peers that completed the ZMQ handshake with a socket; made before the peers
    start, so that none is missed."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)

    def wait(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while seen < count:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0 or not self.monitor.poll(left_ms):
                raise AssertionError(f"{seen} of {count} peers connected in {timeout_s} s")
            if recv_monitor_message(self.monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                seen += 1

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)


def stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> str:
    """SIGTERM (the receiver closes its file), SIGKILL if that hangs; returns its stderr."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1] + f"\n(killed: no exit {timeout_s} s after SIGTERM)"


def receiver_entry(upstream: int, data_port: int, root: Path, suffix: str) -> dict:
    return {
        "class": "Detector",
        "upstream": [f"tcp://127.0.0.1:{upstream}"],
        "nworkers": 1,
        "api_host": "127.0.0.1",
        "api_port": 0,
        "data_host": "127.0.0.1",
        "data_port": data_port,
        "write_roots": [str(root)],
        "dset_name": DSET,
        "file_suffix": suffix,
        "gap_timeout_s": 0.5,
        "flush_interval_s": 0.2,
    }


def require_part_receivers() -> None:
    if "file_suffix" not in ReceiverConfig.model_fields:
        pytest.skip(
            "needs the engine's `file_suffix` config key (one of N receivers: writes "
            "<stem><file_suffix>.h5 and expects msg_number gaps); see scaleout.py"
        )


def test_a_part_releases_frames_at_once_and_counts_no_gap_as_missing():
    require_part_receivers()
    now = [0.0]
    ordering = Ordering(gap_timeout_s=2.0, expect_gaps=True, clock=lambda: now[0])

    def numbers(messages: list) -> list[int]:
        return [m.msg_number for m in messages]

    assert numbers(ordering.push(Header(0, "/data/s.h5"))) == [0]
    assert numbers(ordering.push(Image(4, 3, []))) == [4]
    assert numbers(ordering.push(Image(2, 1, []))) == [2]  # later from another worker: fine
    assert ordering.push(Image(4, 3, [])) == []  # a duplicate is still dropped
    assert ordering.push(SeriesEnd(9)) == []  # stragglers of this part get a moment
    now[0] += 0.3
    assert numbers(ordering.poll()) == [9] and not ordering.in_series
    assert ordering.counts == OrderingCounts(missing=0, duplicate=1, outside=0)


def test_two_receiver_processes_split_one_stream_and_the_master_reads_back_equal(tmp_path):
    require_part_receivers()
    frames = synthetic_frames(24, (32, 40), "uint16", rate=2.0)
    suffixes = ["_part0", "_part1"]
    target = tmp_path / "scan_001.h5"
    messages = list(internal_series(frames, str(target), metadata={"sample": "lysozyme"}))
    with Sender(timeout_s=20) as sender:
        data_ports = [free_port() for _ in suffixes]
        config = tmp_path / "detectors.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    f"split{k}": receiver_entry(sender.port, data_ports[k], tmp_path, suffix)
                    for k, suffix in enumerate(suffixes)
                }
            )
        )
        consumers = [Consumer(port) for port in data_ports]
        watches = [Handshakes(sender.socket)] + [Handshakes(c.socket) for c in consumers]
        env = dict(os.environ, LOG_LEVEL="WARNING")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tango_receiver.cli", "run", str(config), f"split{k}"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(len(suffixes))
        ]
        try:
            for watch, peers in zip(watches, [len(procs)] + [1] * len(consumers), strict=True):
                watch.wait(peers, RECEIVER_START_S)
            # ZMQ deals each message to one peer, so the header and the end go once per
            # receiver; one to each, as no pipe is anywhere near full at this size
            sender.send([messages[0]] * len(procs) + messages[1:-1] + [messages[-1]] * len(procs))
            ends = [consumer.receive_all(timeout_s=20) for consumer in consumers]
        finally:
            logs = [stop(proc) for proc in procs]
            for watch in watches:
                watch.close()
            for consumer in consumers:
                consumer.close()
    assert [proc.returncode for proc in procs] == [0, 0], logs
    assert all(got and b'"series_end"' in got[-1][0] for got in ends), logs

    parts = [Path(part_filename(str(target), suffix)) for suffix in suffixes]
    shares = []
    for part in parts:
        with h5py.File(part, "r") as f:
            shares.append(len(f["/entry/instrument/detector/sequence_number"]))
            assert f["entry"].attrs["series_complete"], part
    assert sum(shares) == len(frames) and min(shares) > 0, f"frames per part: {shares}"
    result = stitch(target, parts, nframes=len(frames))
    assert result.missing == [] and result.duplicates == 0
    with h5py.File(target, "r") as f:
        assert f["entry"].attrs["series_complete"]
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))
        assert f["/entry/instrument/detector/metadata/sample"][()] == b"lysozyme"
