"""The general case: internal format in, HDF5 and secondary port out, over real sockets."""

from __future__ import annotations

import json

import bitshuffle
import cbor2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import make_config, run_series, run_with_consumer, wait_series_done
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.eiger_v1 import eiger_v1_series
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.stream_v2 import stream_v2_series


@pytest.mark.parametrize("compression", ["bslz4", "none"])
def test_series_written_bit_exact_and_forwarded(tmp_path, sender, compression):
    frames = synthetic_frames(7, (64, 80), "uint32", rate=2.0)
    target = tmp_path / "scan_001.h5"
    snap, got = run_with_consumer(
        make_config(sender.port, tmp_path),
        sender,
        internal_series(
            frames,
            str(target),
            compression=compression,
            metadata={"sample": "lysozyme", "beam": {"energy_eV": 12400}},
        ),
    )
    assert (snap.frames_received, snap.frames_written, snap.frames_forwarded) == (7, 7, 7)
    assert snap.frames_missing == snap.frames_invalid == snap.forward_dropped == 0
    assert snap.forward_no_consumer == 0 and not snap.alarm
    assert snap.state == "idle" and snap.series_complete

    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (7, 64, 80) and data.dtype == np.uint32
        for i, frame in enumerate(frames):
            assert np.array_equal(data[i], frame)
        assert list(f["/entry/instrument/detector/sequence_number"][()]) == list(range(7))
        assert f["/entry/instrument/detector/metadata/sample"][()] == b"lysozyme"
        assert f["/entry/instrument/detector/metadata/beam/energy_eV"][()] == 12400
        assert f["entry"].attrs["NX_class"] == "NXentry"
        assert f["/entry/data"].attrs["signal"] == "data"
        assert f["entry"].attrs["series_complete"]
        # stored as it came: bitshuffle-LZ4, or raw without a filter (compress not set)
        assert ("32008" in f["/entry/instrument/detector/data"]._filters) == (
            compression == "bslz4"
        )

    # a consumer written from the documented format alone
    heads = [json.loads(p[0]) for p in got]
    assert [h["htype"] for h in heads] == ["header"] + ["image"] * 7 + ["series_end"]
    assert heads[0]["filename"] == str(target)
    for parts, frame in zip(got[1:-1], frames, strict=False):
        head = json.loads(parts[0])
        assert head["compression"] == compression
        blob = parts[1]
        if compression == "bslz4":
            pixels = bitshuffle.decompress_lz4(
                np.frombuffer(blob, np.uint8, offset=12),
                tuple(head["shape"]),
                np.dtype(head["type"]),
            )
        else:
            pixels = np.frombuffer(blob, dtype=head["type"]).reshape(head["shape"])
        assert np.array_equal(pixels, frame)


def test_no_filename_means_forward_only(tmp_path, sender):
    frames = synthetic_frames(3, (8, 8), "uint16")
    receiver, snap = run_series(
        make_config(sender.port, tmp_path), sender, internal_series(frames, "")
    )
    receiver.close()
    assert snap.frames_received == 3 and snap.frames_written == 0
    assert list(tmp_path.iterdir()) == []


def test_save_raw_false_writes_nothing(tmp_path, sender):
    frames = synthetic_frames(3, (8, 8), "uint16")
    receiver, snap = run_series(
        make_config(sender.port, tmp_path),
        sender,
        internal_series(frames, str(tmp_path / "x.h5"), save_raw=False),
    )
    receiver.close()
    assert snap.frames_received == 3 and snap.frames_written == 0
    assert not (tmp_path / "x.h5").exists()


def test_live_view_holds_the_last_frame(tmp_path, sender):
    frames = synthetic_frames(5, (32, 48), "uint16", rate=3.0)
    receiver, _ = run_series(
        make_config(sender.port, tmp_path), sender, internal_series(frames, str(tmp_path / "lv.h5"))
    )
    try:
        latest = receiver.liveview.latest()
        assert latest is not None and latest.frame == 4
        assert np.array_equal(latest.array(), frames[4])
        binned = latest.array(downsample=2)
        assert binned.shape == (16, 24)
        assert np.isclose(binned[0, 0], frames[4][:2, :2].mean())
    finally:
        receiver.close()


def test_two_series_two_files_and_append_to_matching_dataset(tmp_path, sender):
    frames = synthetic_frames(4, (16, 16), "uint32")
    target = tmp_path / "same.h5"
    config = make_config(sender.port, tmp_path)
    receiver = Receiver(config)
    receiver.start()
    try:
        sender.send(internal_series(frames, str(target)))
        wait_series_done(receiver, 1)
        sender.send(internal_series(frames[:2], str(target)))
        snap = wait_series_done(receiver, 2)
    finally:
        receiver.close()
    assert snap.frames_written == 2
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (6, 16, 16)
        for i, frame in enumerate(frames + frames[:2]):
            assert np.array_equal(data[i], frame)
        assert list(f["/entry/instrument/detector/sequence_number"][()]) == [0, 1, 2, 3, 0, 1]


def test_no_consumer_is_counted_apart_and_raises_no_alarm(tmp_path, sender):
    frames = synthetic_frames(3, (8, 8), "uint16")
    receiver, snap = run_series(
        make_config(sender.port, tmp_path),
        sender,
        internal_series(frames, str(tmp_path / "alone.h5")),
    )
    receiver.close()
    assert (snap.frames_written, snap.frames_forwarded, snap.forward_no_consumer) == (3, 0, 3)
    assert snap.forward_dropped == 0 and not snap.alarm


def cut_v2_chunk(message: list[bytes]) -> list[bytes]:
    """A stream v2 image whose CBOR is sound but whose compressed frame stops after 14 bytes."""

    def cut(tag: cbor2.CBORTag, immutable: bool) -> object:
        if tag.tag == 56500:
            algorithm, size, chunk = tag.value
            return cbor2.CBORTag(56500, [algorithm, size, chunk[:14]])
        return tag

    return [cbor2.dumps(cbor2.loads(message[0], tag_hook=cut))]


@pytest.mark.parametrize(
    "cls, series, corrupt",
    [
        (
            "Detector",
            lambda frames, target: internal_series(frames, target),
            lambda m: [m[0], m[1][:14]],
        ),
        (
            "Eiger",
            lambda frames, target: eiger_v1_series(frames, target),
            lambda m: [*m[:2], m[2][:14], *m[3:]],
        ),
        (
            "DectrisStream2",
            lambda frames, target: stream_v2_series({"threshold_1": frames}, target),
            cut_v2_chunk,
        ),
    ],
)
def test_an_invalid_image_is_counted_once(tmp_path, sender, cls, series, corrupt):
    """Refused in the middle of its series, it is invalid, not also missing."""
    frames = synthetic_frames(4, (32, 40), "uint32", rate=2.0)
    messages = list(series(frames, str(tmp_path / f"{cls}.h5")))
    messages[2] = corrupt(messages[2])  # the second image: its frame data cut short
    receiver, snap = run_series(make_config(sender.port, tmp_path, cls), sender, messages)
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (3, 1, 0)
    assert not snap.series_complete
