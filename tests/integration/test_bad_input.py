"""Bad input never crashes the receiver and never costs a valid frame."""

from __future__ import annotations

import json
import os

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import make_config, run_series, wait_series_done
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def image_head(n: int, shape=(8, 8), dtype="uint32", compression="bslz4") -> bytes:
    return j(
        {
            "htype": "image",
            "msg_number": n,
            "frame": n - 1,
            "shape": list(shape),
            "type": dtype,
            "compression": compression,
        }
    )


def test_malformed_messages_are_counted_and_the_series_goes_on(tmp_path, sender):
    frames = synthetic_frames(4, (8, 8), "uint32", rate=1.0)
    good = [encode_chunk(f) for f in frames]
    target = tmp_path / "bad.h5"
    messages = [
        [j({"htype": "header", "msg_number": 0, "filename": str(target)})],
        [image_head(1), good[0]],
        [b"\xff\xfe not json"],  # not JSON
        [j(["a", "list"])],  # JSON, not an object
        [j({"htype": "bogus", "msg_number": 2})],  # unknown htype
        [j({"htype": "image", "msg_number": -1, "frame": 0})],  # bad msg_number
        [image_head(2), good[1][:14]],  # truncated chunk
        [image_head(2, shape=(10**5, 10**5)), good[1]],  # absurd shape
        [image_head(2, compression="none"), b"\x00" * 10],  # raw blob of the wrong size
        [image_head(2, compression="zstd"), good[1]],  # unknown compression
        [image_head(2, dtype="object"), good[1]],  # unsafe dtype
        [image_head(2)],  # blob missing
        [image_head(2), good[1]],
        [image_head(3), good[2]],
        [image_head(4), good[3]],
        [j({"htype": "series_end", "msg_number": 5})],
    ]
    receiver, snap = run_series(make_config(sender.port, tmp_path), sender, messages)
    receiver.close()
    assert snap.frames_invalid == 10
    assert (snap.frames_received, snap.frames_written, snap.frames_missing) == (4, 4, 0)
    assert any("invalid message" in m for m in snap.messages)
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_gap_and_duplicate_counted_nothing_written_twice(tmp_path, sender):
    frames = synthetic_frames(4, (8, 8), "uint32", rate=1.0)
    msgs = list(internal_series(frames, str(tmp_path / "gap.h5")))
    # drop image 2 (msg_number 2), send image 3 twice
    sent = [msgs[0], msgs[1], msgs[3], msgs[3], msgs[4], msgs[5]]
    receiver, snap = run_series(make_config(sender.port, tmp_path), sender, sent)
    receiver.close()
    assert (snap.frames_written, snap.frames_missing, snap.frames_duplicate) == (3, 1, 1)
    assert not snap.series_complete and snap.alarm
    with h5py.File(tmp_path / "gap.h5", "r") as f:
        assert list(f["/entry/instrument/detector/sequence_number"][()]) == [0, 2, 3]
        assert not f["entry"].attrs["series_complete"]
        assert np.array_equal(f["/entry/data/data"][1], frames[2])


@pytest.mark.parametrize("name", ["../escape.h5", "relative.h5", "/etc/tango_receiver_test.h5"])
def test_filename_outside_roots_is_refused(tmp_path, sender, name):
    root = tmp_path / "root"
    root.mkdir()
    filename = name if name.startswith("/") or not name.startswith("..") else f"{root}/{name}"
    frames = synthetic_frames(2, (8, 8), "uint32")
    receiver, snap = run_series(
        make_config(sender.port, root), sender, internal_series(frames, filename)
    )
    receiver.close()
    assert snap.state == "error" and filename in snap.error
    assert snap.frames_received == 2 and snap.frames_written == 0
    assert not os.path.exists("/etc/tango_receiver_test.h5")
    assert not (tmp_path / "escape.h5").exists()


def test_symlink_escaping_the_root_is_refused(tmp_path, sender):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    frames = synthetic_frames(2, (8, 8), "uint32")
    receiver, snap = run_series(
        make_config(sender.port, root), sender, internal_series(frames, str(root / "link" / "x.h5"))
    )
    receiver.close()
    assert snap.state == "error" and "outside the write roots" in snap.error
    assert list(outside.iterdir()) == []


def test_existing_file_of_another_shape_is_never_touched(tmp_path, sender):
    target = tmp_path / "existing.h5"
    with h5py.File(target, "w") as f:
        f.create_dataset("/entry/instrument/detector/data", data=np.arange(24).reshape(2, 3, 4))
    before = target.read_bytes()
    frames = synthetic_frames(2, (8, 8), "uint32")
    receiver, snap = run_series(
        make_config(sender.port, tmp_path), sender, internal_series(frames, str(target))
    )
    receiver.close()
    assert snap.state == "error" and "not appending" in snap.error
    with h5py.File(target, "r") as f:
        assert np.array_equal(
            f["/entry/instrument/detector/data"][()], np.arange(24).reshape(2, 3, 4)
        )
    assert len(before) > 0


def test_fault_then_reset_and_the_next_series_is_complete(tmp_path, sender):
    frames = synthetic_frames(3, (8, 8), "uint32")
    receiver = Receiver(make_config(sender.port, tmp_path))
    receiver.start()
    try:
        sender.send(internal_series(frames, "/nowhere/refused.h5"))
        snap = wait_series_done(receiver, 1)
        assert snap.state == "error" and "/nowhere/refused.h5" in snap.error
        receiver.reset()
        assert receiver.snapshot().state == "idle"
        sender.send(internal_series(frames, str(tmp_path / "after.h5")))
        snap = wait_series_done(receiver, 2)
    finally:
        receiver.close()
    assert snap.state == "idle" and snap.frames_written == 3 and snap.series_complete


def test_verify_chunks_refuses_a_corrupt_block_table(tmp_path, sender):
    """Long enough to pass the cheap check, but a block length runs past the end."""
    frames = synthetic_frames(3, (64, 64), "uint32", rate=1.0)
    corrupt = bytearray(encode_chunk(frames[1]))
    corrupt[12:16] = (10**6).to_bytes(4, "big")
    messages = [
        [j({"htype": "header", "msg_number": 0, "filename": str(tmp_path / "v.h5")})],
        [image_head(1, (64, 64)), encode_chunk(frames[0])],
        [image_head(2, (64, 64)), bytes(corrupt)],
        [image_head(2, (64, 64)), encode_chunk(frames[1])],
        [image_head(3, (64, 64)), encode_chunk(frames[2])],
        [j({"htype": "series_end", "msg_number": 4})],
    ]
    config = make_config(sender.port, tmp_path, verify_chunks=True)
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_duplicate) == (3, 1, 0)
    assert any("truncated" in m for m in snap.messages)
    with h5py.File(tmp_path / "v.h5", "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))
