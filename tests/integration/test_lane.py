"""The compiled lane (lane.py, _v1lane.c), for stream v1 and the internal format: it takes a
message only when the Python decoder would store the same image, and a receiver with it writes
the same file as without."""

from __future__ import annotations

import json
import time

import h5py
import hdf5plugin  # noqa: F401  (reads the bitshuffle chunks back)
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_config, wait_series_done
from tango_receiver import lane
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.detector import Detector, detector_for
from tango_receiver.engine.chunk_writer import write_chunks
from tango_receiver.engine.receiver import Receiver
from tango_receiver.engine.writer import SeriesWriter
from tango_receiver.messages import FrameRun, InvalidMessage
from tango_receiver.sim.eiger_v1 import eiger_v1_series
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.sender import Sender

pytestmark = pytest.mark.skipif(not lane.AVAILABLE, reason="the compiled lane is not built")

SHAPE = (40, 30)  # y, x
FRAMES = synthetic_frames(4, SHAPE, "uint32", rate=1.0)
CHUNKS = [encode_chunk(f) for f in FRAMES]


def dimage(
    frame: int,
    chunk: bytes = CHUNKS[0],
    head: bytes | None = None,
    desc: bytes | None = None,
    extra: tuple[bytes, ...] = (b'{"htype": "dconfig-1.0"}',),
) -> list[bytes]:
    head = (
        head
        if head is not None
        else json.dumps({"htype": "dimage-1.0", "series": 1, "frame": frame, "hash": "ab"}).encode()
    )
    desc = (
        desc
        if desc is not None
        else json.dumps(
            {
                "htype": "dimage_d-1.0",
                "shape": [SHAPE[1], SHAPE[0]],
                "type": "uint32",
                "encoding": "bs32-lz4<",
                "size": len(chunk),
            }
        ).encode()
    )
    return [head, desc, chunk, *extra]


def image(frame: int, chunk: bytes = CHUNKS[0], head: bytes | None = None) -> list[bytes]:
    """The internal format's image message of frame ``frame`` (msg_number ``frame + 1``)."""
    head = (
        head
        if head is not None
        else json.dumps(
            {
                "htype": "image",
                "msg_number": frame + 1,
                "frame": frame,
                "shape": list(SHAPE),
                "type": "uint32",
                "compression": "bslz4",
            }
        ).encode()
    )
    return [head, chunk]


MESSAGE = {"Eiger": dimage, "Detector": image}  # the image message of each class with a lane


class Pair:
    """A PUSH socket and a receiver's lane source on 127.0.0.1 (Eiger: stream v1; Detector:
    the internal format)."""

    def __init__(self, tmp_path, detector_class: str = "Eiger") -> None:
        self.ctx = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        port = self.push.bind_to_random_port("tcp://127.0.0.1")
        self.detector = detector_for(make_config(port, tmp_path, detector_class))
        self.message = MESSAGE[detector_class]
        self.source = self.detector.open(self.ctx)
        assert isinstance(self.source, lane.LaneSource)

    def exchange(self, messages: list[list[bytes]]) -> list:
        """Send, then receive until every message came back (as parts or in runs)."""
        for parts in messages:
            self.push.send_multipart(parts)
        items, count, deadline = [], 0, time.monotonic() + 10
        while count < len(messages) and time.monotonic() < deadline:
            for item in self.source.receive(100):
                items.append(item)
                count += len(item) if isinstance(item, FrameRun) else 1
        assert count == len(messages)
        return items

    def teach(self) -> None:
        """The first frame of a form goes through Python; the lane takes its form after it."""
        self.exchange([self.message(0)])

    def close(self) -> None:
        self.source.close()
        self.push.close(linger=0)
        self.ctx.term()


@pytest.fixture(params=["Eiger", "Detector"])
def pair(tmp_path, request):
    p = Pair(tmp_path, request.param)
    yield p
    p.close()


@pytest.fixture
def v1_pair(tmp_path):
    p = Pair(tmp_path, "Eiger")
    yield p
    p.close()


@pytest.fixture
def internal_pair(tmp_path):
    p = Pair(tmp_path, "Detector")
    yield p
    p.close()


def check_items(detector: Detector, sent: list[list[bytes]], items: list) -> int:
    """Every frame the lane took equals what the Python decoder makes of the message, and is
    forwarded as the Python path forwards it; every other message came back as sent. Returns
    how many the lane took."""
    taken, position = 0, 0
    for item in items:
        if isinstance(item, FrameRun):
            stored = 0
            for i, image in enumerate(item.images()):
                parts = sent[position + i]
                expected = detector.decode(parts)  # raises if Python would refuse it
                assert (image.msg_number, image.frame) == (expected.msg_number, expected.frame)
                (got,), (want,) = image.channels, expected.channels
                assert (got.name, got.shape, got.dtype, got.compression) == (
                    want.name,
                    want.shape,
                    want.dtype,
                    want.compression,
                )
                assert bytes(got.blob) == bytes(want.blob)
                assert [bytes(p) for p in image.to_wire()] == [bytes(p) for p in expected.to_wire()]
                assert image.nbytes_wire == sum(map(len, parts))
                stored += len(got.blob)
            assert item.nbytes_stored == stored
            taken += len(item)
            position += len(item)
        else:
            assert [bytes(p) for p in item] == sent[position]
            position += 1
    return taken


def test_steady_frames_come_in_runs(pair):
    pair.teach()
    sent = [pair.message(i, CHUNKS[i % 4]) for i in range(1, 41)]
    items = pair.exchange(sent)
    assert all(isinstance(item, FrameRun) for item in items)
    assert check_items(pair.detector, sent, items) == 40


def test_a_form_is_taken_only_after_python_saw_it(pair):
    sent = [pair.message(i) for i in range(3)]
    for parts in sent:  # one at a time: the first teaches the lane, the next two are taken
        (item,) = pair.exchange([parts])
        assert isinstance(item, list) == (parts is sent[0])


def _json(obj: object, **kw) -> bytes:
    return json.dumps(obj, **kw).encode()


HEAD = {"htype": "dimage-1.0", "series": 1, "frame": 7, "hash": "ab"}
DESC = {
    "htype": "dimage_d-1.0",
    "shape": [SHAPE[1], SHAPE[0]],
    "type": "uint32",
    "encoding": "bs32-lz4<",
    "size": 1,
}

# (message, taken): what the lane takes, and everything it must leave to Python
V1_VARIANTS = [
    (dimage(7, head=_json(HEAD, separators=(",", ":"))), True),
    (dimage(7, head=b' \n{ "frame" : 7 ,\t"htype":"dimage-1.0" }\r\n'), True),
    (dimage(7, extra=()), True),  # three parts: Python needs no more
    (dimage(7, extra=(b"{}", b"x")), True),
    (dimage(7, desc=_json({k: v for k, v in DESC.items() if k != "htype"})), True),
    (dimage(7, head=_json(HEAD | {"frame": 7.0})), False),
    (dimage(7, head=_json(HEAD | {"frame": -1})), False),
    (dimage(7, head=_json(HEAD | {"frame": True})), False),
    (dimage(7, head=_json(HEAD | {"frame": "7"})), False),
    (dimage(7, head=b'{"htype": "dimage-1.0", "frame": 7, "frame": 8}'), False),
    (dimage(7, head=b'{"htype": "dimage-1.0", "frame": 07}'), False),
    (dimage(7, head=b'{"htype": "dimage-1.0", "frame": 7}x'), False),
    (dimage(7, head=b'{"htype": "dimage-1.0", "frame": 7'), False),
    (dimage(7, head=b'{"htype": "dimage\\u002d1.0", "frame": 7}'), False),  # valid, for Python
    (dimage(7, head=_json(HEAD | {"extra": {"nested": 1}})), False),  # valid, for Python
    (dimage(7, head=_json(HEAD | {"htype": "dimage-1.1"})), False),
    (dimage(7, head=_json(HEAD | {"frame": 2**60})), False),
    (dimage(7, head=b'{"htype": "dimage-1.0", "frame": 7, "x": "\xc3\xa9"}'), False),
    (dimage(7, desc=_json(DESC | {"shape": [SHAPE[1], SHAPE[0], 1]})), False),
    (dimage(7, desc=_json(DESC | {"shape": [SHAPE[0], SHAPE[1]]})), False),
    (dimage(7, desc=_json(DESC | {"type": "int32"})), False),
    (dimage(7, desc=_json(DESC | {"encoding": "bs32-lz4>"})), False),
    (dimage(7, desc=_json({k: v for k, v in DESC.items() if k != "encoding"})), False),
    (dimage(7, desc=_json({k: v for k, v in DESC.items() if k != "type"})), False),
    (dimage(7, chunk=CHUNKS[0][:15]), False),  # shorter than its block table
    (dimage(7, chunk=CHUNKS[0][:11]), False),
    (dimage(7, chunk=b"\x00" * 8 + CHUNKS[0][8:]), False),  # another uncompressed size
    (dimage(7, chunk=encode_chunk(FRAMES[0].astype(np.uint16))), False),
    (dimage(7)[:2], False),
]

IMAGE = {
    "htype": "image",
    "msg_number": 8,
    "frame": 7,
    "shape": list(SHAPE),
    "type": "uint32",
    "compression": "bslz4",
}
INTERNAL_VARIANTS = [
    (image(7, head=_json(IMAGE, separators=(",", ":"))), True),
    (
        image(
            7,
            head=b' \n{ "compression":"bslz4", "frame" : 7 ,\t"type":"uint32", "shape": '
            b'[40, 30], "msg_number": 8, "htype":"image" }\r\n',
        ),
        True,
    ),
    (image(7, head=_json(IMAGE | {"timestamp": 12, "series_id": "a", "ok": True})), True),
    (image(7, head=_json(IMAGE | {"frame": 1000})), True),  # frame is not msg_number - 1
    (image(7, head=_json(IMAGE | {"msg_number": 8.0})), False),
    (image(7, head=_json(IMAGE | {"msg_number": -1})), False),
    (image(7, head=_json(IMAGE | {"msg_number": True})), False),
    (image(7, head=_json(IMAGE | {"msg_number": "8"})), False),
    (image(7, head=_json(IMAGE | {"frame": -1})), False),
    (image(7, head=_json(IMAGE | {"frame": None})), False),
    (image(7, head=_json(IMAGE | {"msg_number": 2**60})), False),
    (image(7, head=_json(IMAGE)[:-1] + b', "msg_number": 9}'), False),  # a key twice
    (image(7, head=_json(IMAGE) + b"x"), False),
    (image(7, head=_json(IMAGE)[:-1]), False),
    (image(7, head=_json(IMAGE).replace(b'"image"', b'"imag\\u0065"')), False),  # for Python
    (image(7, head=_json(IMAGE | {"htype": "header"})), False),
    (image(7, head=_json(IMAGE | {"extra": {"nested": 1}})), False),  # valid, for Python
    (image(7, head=_json(IMAGE | {"x": "\u00e9"}, ensure_ascii=False)), False),
    (image(7, head=_json(IMAGE | {"channels": None})), False),  # Python's: stores it as well
    (image(7, head=_json(IMAGE | {"channels": [IMAGE | {"name": "data"}]})), False),
    (image(7, head=_json({k: v for k, v in IMAGE.items() if k != "compression"})), False),
    (image(7, head=_json(IMAGE | {"compression": "none"})), False),
    (image(7, head=_json(IMAGE | {"compression": "lz4"})), False),
    (image(7, head=_json({k: v for k, v in IMAGE.items() if k != "type"})), False),
    (image(7, head=_json(IMAGE | {"type": "int32"})), False),
    (image(7, head=_json(IMAGE | {"shape": [1, *SHAPE]})), False),
    (image(7, head=_json(IMAGE | {"shape": [SHAPE[1], SHAPE[0]]})), False),
    (image(7, head=_json(IMAGE | {"shape": []})), False),
    (image(7, chunk=CHUNKS[0][:15]), False),  # shorter than its block table
    (image(7, chunk=CHUNKS[0][:11]), False),
    (image(7, chunk=b"\x00" * 8 + CHUNKS[0][8:]), False),  # another uncompressed size
    (image(7, chunk=encode_chunk(FRAMES[0].astype(np.uint16))), False),
    (image(7)[:1], False),
    (image(7) + [b"x"], False),  # two blobs for one channel
]
VARIANTS = [("Eiger", case) for case in V1_VARIANTS] + [
    ("Detector", case) for case in INTERNAL_VARIANTS
]


@pytest.mark.parametrize("detector_class,case", VARIANTS)
def test_the_lane_takes_exactly_what_python_stores_as_is(tmp_path, detector_class, case):
    message, taken = case
    pair = Pair(tmp_path, detector_class)
    try:
        pair.teach()
        items = pair.exchange([message])
        assert check_items(pair.detector, [message], items) == int(taken)
        if not taken and isinstance(items[0], list):
            try:  # left to Python, which either stores it otherwise or refuses it with a reason
                pair.detector.decode(items[0])
            except InvalidMessage:
                pass
    finally:
        pair.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    part=st.sampled_from([0, 1, 2]),
    position=st.integers(0, 400),
    byte=st.integers(0, 255),
    cut=st.booleans(),
)
def test_a_damaged_message_is_never_taken_unless_python_takes_it(pair, part, position, byte, cut):
    """Any one byte changed or the part cut there: if the lane still takes the frame, the Python
    decoder must store the same image (check_items raises otherwise)."""
    pair.teach()  # again: a damaged message may have taught the lane another sound form
    message = pair.message(7)
    part %= len(message)
    data = bytearray(message[part])
    position %= len(data)
    if cut:
        del data[position:]
    else:
        data[position] = byte
    message[part] = bytes(data)
    check_items(pair.detector, [message], pair.exchange([message]))


@pytest.mark.parametrize("cut", ["block past the end", "cut in half", "trailing bytes"])
def test_the_lane_follows_every_block_length_by_default(pair, cut):
    """What Python refuses with default settings the lane hands back to Python (issue 19)."""
    pair.teach()
    bad = bytearray(CHUNKS[0])
    if cut == "block past the end":
        bad[12:16] = (len(bad)).to_bytes(4, "big")
    elif cut == "cut in half":
        del bad[len(bad) // 2 :]
    else:
        bad += b"\0" * 8
    items = pair.exchange([pair.message(1), pair.message(2, chunk=bytes(bad)), pair.message(3)])
    assert [isinstance(i, FrameRun) for i in items] == [True, False, True]
    with pytest.raises(InvalidMessage, match="truncated|longer than its blocks"):
        pair.detector.decode(items[1])


def test_verify_chunks_decompresses_in_python_without_the_lane(tmp_path):
    config = make_config(9, tmp_path, "Eiger", verify_chunks=True)  # connects, never sends
    ctx = zmq.Context()
    try:
        source = detector_for(config).open(ctx)
        assert not isinstance(source, lane.LaneSource)
        source.close()
    finally:
        ctx.term()


@pytest.mark.parametrize("discard", ["true", "false", "null"])
def test_an_image_that_says_whether_to_discard_it_is_pythons(tmp_path, discard):
    """Only Python decides what ``discard`` means (issue 24): the lane hands such an image back."""
    p = Pair(tmp_path, "Detector")
    try:
        p.teach()
        head = (
            json.dumps(
                {
                    "htype": "image",
                    "msg_number": 3,
                    "frame": 2,
                    "shape": list(SHAPE),
                    "type": "uint32",
                    "compression": "bslz4",
                }
            )[:-1]
            + f', "discard": {discard}}}'
        )
        items = p.exchange([image(1), image(2, head=head.encode()), image(3)])
        assert [isinstance(i, FrameRun) for i in items] == [True, False, True]
        assert p.detector.decode(items[1]).discard is (discard == "true")
    finally:
        p.close()


def test_many_parts_in_one_batch_come_back_whole(pair):
    """More parts than the lane's first buffer holds (headers with arrays have 8 or 9): the
    buffer grows and every part arrives intact, small and large."""
    sent = [[b"{}", *(bytes([i, k]) * (k * 5000 + 1) for k in range(8))] for i in range(60)]
    items = pair.exchange(sent)
    assert [[bytes(p) for p in item] for item in items] == sent


def test_chunks_outlive_the_run_that_carried_them(pair):
    pair.teach()
    (run,) = pair.exchange([pair.message(1, CHUNKS[1])])
    chunk = run.chunks[0]
    view = memoryview(chunk)
    del run, chunk
    assert view.readonly and bytes(view) == CHUNKS[1]


def test_write_chunks_reports_how_far_it_got(tmp_path):
    path = tmp_path / "chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "data",
            shape=(3, *SHAPE),
            chunks=(1, *SHAPE),
            dtype="uint32",
            compression=32008,
            compression_opts=(0, 2),
        )
    with h5py.File(path, "r+") as f:
        assert write_chunks(f["data"], SHAPE, 0, CHUNKS[:3]) == (3, 0)
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["data"][()], np.stack(FRAMES[:3]))
        written, _ = write_chunks(f["data"], SHAPE, 0, CHUNKS[:1])  # read-only: HDF5 refuses
        assert written == 0


# --- the whole receiver, with the lane and without --------------------------------------------
FIRST_FRAME = {"Eiger": 0, "Detector": 1000}  # the internal format's frame is not its number


def _renumbered(parts: list[bytes], first_frame: int) -> list[bytes]:
    """An internal-format image whose frame is ``first_frame`` + its msg_number - 1."""
    head = json.loads(parts[0])
    return [_json(head | {"frame": first_frame + head["msg_number"] - 1}), *parts[1:]]


def _series(detector_class: str, target: str) -> list[list[bytes]]:
    """Header, 1 frame (teaches the lane), then frames with a gap, a duplicate, an invalid
    frame and (internal format) two frames that swapped places in between, then the end."""
    frames = synthetic_frames(8, SHAPE, "uint32", rate=3.0)
    if detector_class == "Eiger":
        messages, blob = list(eiger_v1_series(frames, target, count=300)), 2
    else:
        messages, blob = list(internal_series(frames, target, count=300)), 1
        messages[1:-1] = [_renumbered(m, FIRST_FRAME[detector_class]) for m in messages[1:-1]]
        messages[60], messages[61] = messages[61], messages[60]  # msg_number orders, not arrival
    images = messages[1:-1]
    del images[150]  # a gap: frame 150 never comes
    images.insert(100, images[99])  # frame 99 twice
    bad = list(images[200])
    bad[blob] = bytes(bad[blob])[:15]  # shorter than its block table
    images[200] = bad  # frame ~200 truncated: refused, counted invalid
    return [messages[0], images[0], *images[1:], messages[-1]]


def _receive(tmp_path, detector_class: str, lane_on: bool, messages: list[list[bytes]]):
    with Sender(timeout_s=30) as sender:
        receiver = Receiver(make_config(sender.port, tmp_path, detector_class, fast_lane=lane_on))
        receiver.start()
        sender.send(messages[:2])
        time.sleep(0.3)  # the first frame alone: the lane knows the form for what follows
        sender.send(messages[2:])
        snap = wait_series_done(receiver)
        receiver.close()
    return snap


@pytest.mark.parametrize("detector_class", MESSAGE)
def test_receiver_writes_the_same_file_with_and_without_the_lane(
    tmp_path, monkeypatch, detector_class
):
    results, runs = {}, []
    write_run = SeriesWriter.write_run
    monkeypatch.setattr(
        SeriesWriter,
        "write_run",
        lambda self, run: (runs.append(len(run)), write_run(self, run))[1],
    )
    for lane_on in (True, False):
        target = tmp_path / f"series_{lane_on}.h5"
        messages = _series(detector_class, str(target))
        snap = _receive(tmp_path, detector_class, lane_on, messages)
        runs_of_series, runs[:] = runs[:], []
        with h5py.File(target, "r") as f:
            data = f["/entry/instrument/detector/data"]
            chunks = [data.id.read_direct_chunk((i, 0, 0))[1] for i in range(data.shape[0])]
            sequence = f["/entry/instrument/detector/sequence_number"][()].tolist()
            complete = bool(f["/entry"].attrs["series_complete"])
        results[lane_on] = (snap, runs_of_series, chunks, sequence, complete)
    (fast, runs, chunks, sequence, complete), (slow, slow_runs, *python) = (
        results[True],
        results[False],
    )
    # with the lane, runs throughout; without it, only frames the ordering held, let go as runs,
    # and none for stream v1, whose Python path keeps each frame's exposure times (no run can)
    assert sum(runs) > 200
    assert 0 < sum(slow_runs) <= 150 if detector_class == "Detector" else sum(slow_runs) == 0
    assert [chunks, sequence, complete] == python
    first = FIRST_FRAME[detector_class]
    assert sequence == [n for n in range(first, first + 300) if n - first not in (150, 200)]
    counters = (
        "frames_received",
        "frames_written",
        "frames_missing",
        "frames_invalid",
        "frames_duplicate",
        "bytes_wire",
        "bytes_stored",
        "bytes_raw",
        "last_frame_number",
        "forward_no_consumer",
    )
    assert {k: getattr(fast, k) for k in counters} == {k: getattr(slow, k) for k in counters}
    assert (fast.frames_missing, fast.frames_invalid, fast.frames_duplicate) == (1, 1, 1)


@pytest.mark.parametrize("detector_class", MESSAGE)
def test_several_workers_still_write_in_runs(tmp_path, monkeypatch, detector_class):
    """Each of two workers gets every other frame (ZMQ deals them out in turn): its lane runs
    step by two, and the engine writes the frames the two runs make together as one run."""
    runs: list[int] = []
    write_run = SeriesWriter.write_run
    monkeypatch.setattr(
        SeriesWriter,
        "write_run",
        lambda self, run: (runs.append(len(run)), write_run(self, run))[1],
    )
    target = tmp_path / "workers.h5"
    frames = synthetic_frames(8, SHAPE, "uint32", rate=3.0)
    series = eiger_v1_series if detector_class == "Eiger" else internal_series
    messages = list(series(frames, str(target), count=2000))
    with Sender(timeout_s=30) as sender:
        receiver = Receiver(make_config(sender.port, tmp_path, detector_class, nworkers=2))
        receiver.start()
        sender.send(messages)
        snap = wait_series_done(receiver)
        receiver.close()
    assert snap.frames_written == 2000 and snap.series_complete
    assert sum(runs) > 1000 and max(runs) > 8, runs
    with h5py.File(target, "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert f["/entry/instrument/detector/sequence_number"][()].tolist() == list(range(2000))
        blob = 2 if detector_class == "Eiger" else 1
        assert all(
            data.id.read_direct_chunk((i, 0, 0))[1] == messages[i + 1][blob] for i in range(2000)
        )
