"""The splitter: one detector stream relayed to N receivers (control to every one, each image
to one), so that every part opens and closes its own file and ``stitch`` joins them.

The end-to-end tests run real receiver processes behind a real splitter, as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cbor2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import yaml
import zmq

from conftest import wait_for
from tango_receiver.codecs.cbor_view import cbor_type
from tango_receiver.config import load_receiver
from tango_receiver.detector import detector_classes
from tango_receiver.engine.writer import part_filename
from tango_receiver.scaleout.classify import Kind, SplitError, classifier_for
from tango_receiver.scaleout.split import Splitter, add_parser
from tango_receiver.scaleout.stitch import stitch
from tango_receiver.sim.eiger_v1 import capture_v1, eiger_v1_series
from tango_receiver.sim.formats import reader, series_for
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender
from tango_receiver.sim.stream_v2 import capture_v2, stream_v2_series

DSET = "/entry/instrument/detector/data"
C, IMG, U = Kind.CONTROL, Kind.IMAGE, Kind.UNKNOWN
internal_kind, stream_v1_kind, stream_v2_kind = (
    classifier_for(name) for name in ("Detector", "Eiger", "DectrisStream2")
)
INTERNAL_HEADER = next(iter(internal_series([np.zeros((4, 4), np.uint16)])))
V1_HEADER = next(iter(eiger_v1_series([np.zeros((4, 4), np.uint16)])))
V2_HEADER = next(iter(stream_v2_series({"t": [np.zeros((4, 4), np.uint16)]})))
START_S = 30.0  # a receiver process's start (imports h5py, FastAPI) on a loaded machine


# --- classifiers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, shape, dtype",
    [
        ("internal", (16, 24), "uint16"),
        ("eiger", (16, 24), "uint32"),
        ("stream2", (16, 24), "uint16"),
        ("pilatus", (16, 24), "int32"),
        ("orca", (16, 24), "uint16"),
        ("xspress3", (4, 64), "uint32"),
    ],
)
def test_every_simulated_format_is_told_control_and_images(fmt, shape, dtype):
    classify = classifier_for(reader(fmt).__name__)
    assert [classify(m) for m in series_for(fmt, shape, dtype, 3)] == [C, IMG, IMG, IMG, C]


def test_captured_streams_are_told_control_and_images(fixtures_dir):
    v1 = capture_v1(fixtures_dir / "captured" / "eiger-stream-v1-eiger1-1m.zip")
    assert [stream_v1_kind(m) for m in v1] == [C] + [IMG] * 9 + [C]  # header_detail all: 9 parts
    v2 = capture_v2(fixtures_dir / "captured" / "dectris-stream-v2-series.zip")
    assert [stream_v2_kind(m) for m in v2] == [C] + [IMG] * 10 + [C]
    r500k = fixtures_dir / "dectris-stream-v2-r500k-bslz4-16bit"
    assert [stream_v2_kind([(r500k / f"{i:06d}.cbor").read_bytes()]) for i in range(1, 12)] == [
        IMG
    ] * 10 + [C]


def test_a_format_is_not_mistaken_for_another_and_garbage_is_unknown():
    internal = next(iter(internal_series([np.zeros((4, 4), np.uint16)])))
    v1 = next(iter(eiger_v1_series([np.zeros((4, 4), np.uint16)])))
    v2 = next(iter(stream_v2_series({"t": [np.zeros((4, 4), np.uint16)]})))
    assert (stream_v1_kind(internal), internal_kind(v1)) == (U, U)
    assert (internal_kind(v2), stream_v2_kind(internal)) == (U, U)
    for parts in ([b"not json"], [b"[1]"], [b'{"htype": ["image"]}'], [b"\xff\xfe"], [b""]):
        assert internal_kind(parts) == U and stream_v1_kind(parts) == U


def test_cbor_type_reads_the_head_of_the_map_only():
    def message(**fields: object) -> bytes:
        return cbor2.dumps(cbor2.CBORTag(55799, fields))

    assert cbor_type(message(type="start")) == "start"
    assert cbor_type(cbor2.dumps({"type": "end"})) == "end"  # no self-describe tag
    # scalars before it are stepped over: numbers, floats, strings, bytes, booleans, null
    assert (
        cbor_type(
            message(
                series_id=2**40,
                t=-3,
                f=0.5,
                s="x" * 300,
                b=b"\0" * 70000,
                ok=True,
                n=None,
                type="image",
            )
        )
        == "image"
    )
    # an image whose pixels are cut off (or are anything at all) is still told an image
    image = message(type="image", image_id=7, data={"t": b"\0" * 4096})
    assert cbor_type(image[:20]) == "image"
    assert cbor_type(image[:12]) is None  # cut inside "image"'s head: not an image
    assert cbor_type(b"\xbf\x64type\x63end\xff") == "end"  # indefinite-length map
    # what would need walking a structure, or is no map, or no text: not found
    assert cbor_type(message(data=[1, 2], type="image")) is None
    assert cbor_type(message(**{f"k{i}": i for i in range(8)}, type="image")) is None
    for data in (
        b"",
        b"\x01",
        cbor2.dumps([1, 2]),
        cbor2.dumps({"type": 3}),
        cbor2.dumps({1: "x", "type": "end"}),
        b"\xd9\xd9\xf7\xbc",
        b"\xa1\x7f",
    ):
        assert cbor_type(data) is None, data


def test_every_detector_class_is_split_or_refused_with_a_reason():
    header = next(iter(internal_series([np.zeros((4, 4), np.uint16)])))
    for name, cls in detector_classes().items():
        if cls.unsplittable is None:
            classifier_for(name)
        else:
            with pytest.raises(SplitError, match=f"class {name} cannot be split: .+"):
                classifier_for(name)
    assert classifier_for("Pilatus")(header) is C  # a subclass speaks what it inherits
    with pytest.raises(SplitError, match="Lambda cannot be split: its modules stream"):
        classifier_for("Lambda")
    with pytest.raises(SplitError, match="Nope cannot be split: unknown class"):
        classifier_for("Nope")


# --- the splitter's sockets ---------------------------------------------------------------------
def test_upstream_and_class_come_from_the_detectors_entry(tmp_path):
    config = tmp_path / "detectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "eiger": {"class": "Eiger", "upstream": ["tcp://127.0.0.1:9401", "127.0.0.1"]},
                "eiger2": {"class": "DectrisStream2", "dcu_host_purple": "127.0.0.1"},
                "pilatus": {
                    "class": "Detector",
                    "pipeline": "PilatusPipeline",
                    "upstream": "tcp://127.0.0.1:9402",
                },
                "lambda": {
                    "class": "Lambda",
                    "upstream": [f"tcp://127.0.0.1:{9010 + i}" for i in range(4)],
                },
            }
        )
    )
    with Splitter.for_receiver(load_receiver(config, "eiger"), 3) as splitter:
        assert splitter.upstream_endpoints == ["tcp://127.0.0.1:9401", "tcp://127.0.0.1:9999"]
        assert splitter.classify(V1_HEADER) is C and len(set(splitter.ports)) == 3
        assert splitter.endpoints == [f"tcp://127.0.0.1:{p}" for p in splitter.ports]
    with Splitter.for_receiver(load_receiver(config, "eiger2"), 2) as splitter:
        assert splitter.upstream_endpoints == ["tcp://127.0.0.1:31001"]
        assert splitter.classify(V2_HEADER) is C and splitter.classify(V1_HEADER) is U
    with Splitter.for_receiver(load_receiver(config, "pilatus"), 2) as splitter:
        assert splitter.classify(INTERNAL_HEADER) is C and splitter.classify(V1_HEADER) is U
    with pytest.raises(SplitError, match="Lambda cannot be split"):
        Splitter.for_receiver(load_receiver(config, "lambda"), 2)


def test_a_port_in_use_is_refused_with_the_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SplitError, match=f"parts on 127.0.0.1 from port {port}: "):
            Splitter(["tcp://127.0.0.1:9"], "Detector", 2, base_port=port)
    with pytest.raises(SplitError, match="at least one part"):
        Splitter(["tcp://127.0.0.1:9"], "Detector", 0)
    with pytest.raises(SplitError, match="no upstream"):
        Splitter([], "Detector", 2)


# --- end to end: sender -> splitter -> receiver processes -> stitch -------------------------------
class EndWatch:
    """A consumer of a receiver's secondary port, connected (handshake done) before the series
    is sent, that then waits for the series_end: the part has handled its whole series."""

    def __init__(self, ctx: zmq.Context, port: int, timeout_s: float) -> None:
        self.socket = ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.LINGER, 0)
        monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.socket.connect(f"tcp://127.0.0.1:{port}")  # after the monitor: nothing missed
        try:
            assert monitor.poll(int(timeout_s * 1000)), f"no handshake with port {port}"
        finally:
            self.socket.disable_monitor()
            monitor.close(linger=0)

    def wait_end(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.socket.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            if json.loads(self.socket.recv_multipart()[0]).get("htype") == "series_end":
                return True
        return False


class PartReceivers:
    """``tango-receiver run`` processes, one per splitter port, writing ``_part<i>`` files; the
    secondary port is any free one (data_port 0), read back from the receiver's log."""

    def __init__(self, root: Path, detector_class: str, upstreams: list[str]) -> None:
        self.config = root / "parts.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    f"part{i}": {
                        "class": detector_class,
                        "upstream": [upstream],
                        "nworkers": 1,
                        "api_host": "127.0.0.1",
                        "api_port": 0,
                        "data_host": "127.0.0.1",
                        "data_port": 0,
                        "write_roots": [str(root)],
                        "dset_name": DSET,
                        "file_suffix": f"_part{i}",
                        "gap_timeout_s": 0.5,
                        "flush_interval_s": 0.2,
                    }
                    for i, upstream in enumerate(upstreams)
                }
            )
        )
        self.logs = [root / f"part{i}.log" for i in range(len(upstreams))]
        self.procs: list[subprocess.Popen] = []
        self.ctx = zmq.Context()
        self.watches: list[EndWatch] = []

    def __enter__(self) -> PartReceivers:
        env = dict(os.environ, LOG_LEVEL="INFO")
        try:
            for i, log in enumerate(self.logs):
                with log.open("w") as out:
                    self.procs.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "tango_receiver.cli",
                                "run",
                                str(self.config),
                                f"part{i}",
                            ],
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=out,
                        )
                    )
            for proc, log in zip(self.procs, self.logs, strict=False):
                self.watches.append(EndWatch(self.ctx, self._secondary_port(proc, log), START_S))
        except BaseException:
            self.__exit__()  # `with` calls it only once __enter__ has returned
            raise
        return self

    def _secondary_port(self, proc: subprocess.Popen, log: Path) -> int:
        found: list[str] = []

        def logged() -> bool:
            assert proc.poll() is None, f"receiver exited {proc.returncode}: {log.read_text()}"
            found[:] = re.findall(r"secondary port (\d+)", log.read_text())
            return bool(found)

        wait_for(logged, START_S, f"{log.name}: the secondary port")
        return int(found[0])

    def wait_series_ends(self, timeout_s: float = 30.0) -> None:
        ended = [watch.wait_end(timeout_s) for watch in self.watches]
        assert all(ended), f"series_end per part: {ended}\n{self.log_text()}"

    def log_text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in self.logs)

    def __exit__(self, *exc: object) -> None:
        """SIGTERM (the receiver closes its file), SIGKILL if that hangs."""
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for watch in self.watches:
            watch.socket.close(linger=0)
        self.ctx.term()


def relaying(splitter: Splitter) -> Callable[[], None]:
    """Run the splitter in a thread; returns what stops it and waits for it."""
    thread = threading.Thread(target=splitter.run, name="splitter", daemon=True)
    thread.start()

    def stop() -> None:
        splitter.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the splitter did not stop"

    return stop


def part_frames(path: Path) -> tuple[np.ndarray, bool]:
    """The frame numbers a part file holds, and whether its series is complete."""
    with h5py.File(path, "r") as f:
        numbers = f[f"{DSET.rpartition('/')[0]}/sequence_number"][()]
        assert f[DSET].shape[0] == len(numbers)
        return numbers, bool(f["entry"].attrs["series_complete"])


FRAMES = 300
SERIES: dict[str, Callable[[list[np.ndarray], str], Iterator[list[bytes]]]] = {
    "Detector": lambda frames, target: internal_series(frames, target),
    "Eiger": lambda frames, target: eiger_v1_series(frames, target),
    "DectrisStream2": lambda frames, target: stream_v2_series({"threshold_1": frames}, target),
}  # one channel: stored at dset_name, as the others


@pytest.mark.parametrize("detector_class", list(SERIES))
def test_split_series_lands_whole_in_two_parts_and_stitches_back_equal(tmp_path, detector_class):
    frames = synthetic_frames(FRAMES, (16, 24), "uint16", rate=2.0)  # every one distinct
    target = tmp_path / "scan_001.h5"
    messages = list(SERIES[detector_class](frames, str(target)))
    with Sender(timeout_s=30) as sender, Splitter([sender.endpoint], detector_class, 2) as splitter:
        stop_relay = relaying(splitter)
        try:
            with PartReceivers(tmp_path, detector_class, splitter.endpoints) as parts:
                sender.send(messages)  # as fast as it goes
                parts.wait_series_ends()
        finally:
            stop_relay()
    assert [p.returncode for p in parts.procs] == [0, 0], parts.log_text()
    counts = splitter.counts
    assert (counts.received, counts.control, counts.unknown) == (FRAMES + 2, 2, 0)
    images = [n - counts.control for n in counts.to_part]

    paths = [Path(part_filename(str(target), f"_part{i}")) for i in range(2)]
    held = [part_frames(path) for path in paths]
    assert [complete for _, complete in held] == [True, True], parts.log_text()
    assert [len(numbers) for numbers, _ in held] == images and min(images) > 0, images
    result = stitch(target, paths, nframes=FRAMES)
    assert result.missing == [] and result.duplicates == 0
    with h5py.File(target, "r") as f:
        assert f["entry"].attrs["series_complete"]
        assert np.array_equal(f[DSET][()], np.stack(frames))


def test_a_stalled_part_loses_nothing_the_other_part_takes_its_share(tmp_path):
    """Part 1 reads nothing while the series streams: once its queue is full the splitter
    passes it over, part 0 takes the rest, and what part 1 had queued arrives when it reads."""
    count = 240
    frames = synthetic_frames(count, (256, 256), "uint16", rate=2.0)
    target = tmp_path / "scan_002.h5"
    messages = list(internal_series(frames, str(target), compression="none"))  # 128 kB each
    ctx = zmq.Context()
    stalled = ctx.socket(zmq.PULL)
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.RCVBUF, 64 << 10)
    with (
        Sender(timeout_s=30) as sender,
        Splitter([sender.endpoint], "Detector", 2, sndhwm=4) as splitter,
    ):
        stop_relay = relaying(splitter)
        try:
            with PartReceivers(tmp_path, "Detector", splitter.endpoints[:1]) as parts:
                stalled.connect(splitter.endpoints[1])
                sender.send(messages)
                wait_for(
                    lambda: sum(splitter.counts.to_part) == count + 3,
                    30,
                    "every image and the header and end to part 0 sent",
                )
                queued = []  # part 1 reads at last: the header, its images, then the end
                while not queued or b"series_end" not in queued[-1][0]:
                    assert stalled.poll(10_000), f"part 1 got {len(queued)} messages, no end"
                    queued.append(stalled.recv_multipart())
                parts.wait_series_ends()
        finally:
            stop_relay()
            stalled.close(linger=0)
            ctx.term()
    assert parts.procs[0].returncode == 0, parts.log_text()
    counts = splitter.counts
    assert counts.skipped > 0 and counts.to_part[1] == len(queued)
    in_part1 = [json.loads(m[0])["frame"] for m in queued[1:-1]]
    assert len(in_part1) < count // 2, f"round-robin regardless of the stall: {len(in_part1)}"
    for m in queued[1:-1]:
        frame = json.loads(m[0])["frame"]
        assert m[1] == frames[frame].tobytes()

    numbers, complete = part_frames(Path(part_filename(str(target), "_part0")))
    assert complete
    assert sorted([*numbers.tolist(), *in_part1]) == list(range(count))
    with h5py.File(part_filename(str(target), "_part0"), "r") as f:
        stored = f[DSET][()]
    for index, number in enumerate(numbers):
        assert np.array_equal(stored[index], frames[number]), f"frame {number}"


# --- command line -------------------------------------------------------------------------------
#: what ``tango-receiver split`` runs (cli.py: setup_logging, then the subcommand's fn)
def free_port_pair() -> int:
    """A port P such that P and P + 1 are free now."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two consecutive free ports")


def test_cli_relays_from_the_entry_and_stops_cleanly_on_sigterm(tmp_path):
    base = free_port_pair()
    frames = synthetic_frames(6, (8, 8), "uint16")
    with Sender(timeout_s=30) as sender:
        config = tmp_path / "detectors.yaml"
        config.write_text(
            yaml.safe_dump({"det": {"class": "Detector", "upstream": [sender.endpoint]}})
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tango_receiver.cli",
                "split",
                str(config),
                "det",
                "--parts",
                "2",
                "--base-port",
                str(base),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        ctx = zmq.Context()
        pulls = [ctx.socket(zmq.PULL) for _ in range(2)]
        try:
            for i, pull in enumerate(pulls):
                pull.connect(f"tcp://127.0.0.1:{base + i}")
            sender.send(internal_series(frames, "/data/x.h5"))
            got: list[list[str]] = [[], []]
            for pull, htypes in zip(pulls, got, strict=False):
                while not htypes or htypes[-1] != "series_end":
                    assert pull.poll(START_S * 1000), f"got {got}"
                    htypes.append(json.loads(pull.recv_multipart()[0])["htype"])
        finally:
            proc.send_signal(signal.SIGTERM)
            log = proc.communicate(timeout=20)[1]
            for pull in pulls:
                pull.close(linger=0)
            ctx.term()
    assert proc.returncode == 0, log
    assert all(h[0] == "header" and h[-1] == "series_end" for h in got), got
    assert sum(h.count("image") for h in got) == 6 and all("image" in h for h in got), got
    assert "split stopped: received 8, control 2" in log, log


def test_cli_refuses_a_detector_that_cannot_be_split(tmp_path, caplog):
    config = tmp_path / "detectors.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "lambda": {
                    "class": "Lambda",
                    "upstream": [f"tcp://127.0.0.1:{9010 + i}" for i in range(4)],
                }
            }
        )
    )
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["split", str(config), "lambda", "--parts", "2", "--base-port", "9600"]
    )
    assert args.fn(args) == 2
    assert "class Lambda cannot be split" in caplog.text
