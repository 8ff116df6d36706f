"""DECTRIS stream v1 (SIMPLON 1.8): simulated and captured from a real EIGER 1M."""

from __future__ import annotations

import json

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401
import lz4.block
import numpy as np
import pytest

from conftest import make_config, run_series, run_with_consumer
from tango_receiver.codecs.bslz4 import decode_chunk
from tango_receiver.sim.eiger_v1 import capture_v1, eiger_v1_series
from tango_receiver.sim.frames import synthetic_frames


@pytest.mark.parametrize("detail", ["all", "basic", "none"])
def test_header_detail_levels(tmp_path, sender, detail):
    frames = synthetic_frames(5, (40, 30), "uint32", rate=1.0)
    target = tmp_path / f"eiger_{detail}.h5"
    config = make_config(sender.port, tmp_path, "Eiger", dset_name="/entry/instrument/eiger/data")
    receiver, snap = run_series(
        config, sender, eiger_v1_series(frames, str(target), series=7, header_detail=detail)
    )
    receiver.close()
    assert (snap.frames_received, snap.frames_written, snap.frames_missing) == (5, 5, 0)
    assert snap.series_id == "7" and snap.series_complete
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))
        meta = f["/entry/instrument/eiger/metadata"]
        assert meta["appendix/filename"][()].decode() == str(target)
        if detail != "none":
            assert meta["config/nimages"][()] == 5
            assert meta["config/description"][()] == b"Simulated EIGER"
        if detail == "all":
            assert meta["flatfield"].shape == (40, 30)
            assert meta["pixel_mask"].dtype == np.uint32


def test_captured_eiger_1m_series_bit_exact(tmp_path, sender, fixtures_dir):
    """The real capture: every frame in the file equals the frame decoded from the capture."""
    target = tmp_path / "captured_v1.h5"
    messages = capture_v1(fixtures_dir / "captured" / "eiger-stream-v1-eiger1-1m.zip", str(target))
    expected = [decode_chunk(m[2], (1065, 1030), np.dtype("<u4")) for m in messages[1:-1]]
    assert len(expected) == 9
    config = make_config(sender.port, tmp_path, "Eiger", dset_name="/entry/instrument/eiger/data")
    snap, forwarded = run_with_consumer(config, sender, messages)
    assert (snap.frames_received, snap.frames_written, snap.frames_invalid) == (9, 9, 0)
    assert snap.series_id == "14" and snap.compression_ratio > 50
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (9, 1065, 1030) and data.dtype == np.uint32
        for i, frame in enumerate(expected):
            assert np.array_equal(data[i], frame)
            # stored exactly as the detector compressed it: no recompression
            assert data.id.read_direct_chunk((i, 0, 0))[1] == messages[i + 1][2]
        config_keys = f["/entry/instrument/eiger/metadata/config"]
        assert config_keys["description"][()].startswith(b"Dectris EIGER")
        assert f["/entry/instrument/eiger/metadata/flatfield"].shape == (1065, 1030)
    heads = [json.loads(p[0]) for p in forwarded]
    assert [h["htype"] for h in heads] == ["header"] + ["image"] * 9 + ["series_end"]
    for parts, frame in zip(forwarded[1:-1], expected, strict=False):
        head = json.loads(parts[0])
        assert head["shape"] == [1065, 1030] and head["compression"] == "bslz4"
        pixels = bitshuffle.decompress_lz4(
            np.frombuffer(parts[1], np.uint8, offset=12), (1065, 1030), np.dtype("uint32")
        )
        assert np.array_equal(pixels, frame)


def _dimage(frame: int, blob: bytes, encoding: str, shape_xy=(30, 40), dtype="uint32") -> list:
    return [
        json.dumps({"htype": "dimage-1.0", "frame": frame, "series": 1}).encode(),
        json.dumps(
            {
                "htype": "dimage_d-1.0",
                "shape": list(shape_xy),
                "type": dtype,
                "encoding": encoding,
                "size": len(blob),
            }
        ).encode(),
        blob,
        json.dumps({"htype": "dconfig-1.0", "real_time": 1}).encode(),
    ]


def test_plain_lz4_and_uncompressed_encodings(tmp_path, sender):
    frames = synthetic_frames(3, (40, 30), "uint32", rate=2.0)
    target = tmp_path / "lz4.h5"
    header = next(eiger_v1_series(frames, str(target), header_detail="basic"))
    messages = [
        header,
        _dimage(0, lz4.block.compress(frames[0].tobytes(), store_size=False), "lz4<"),
        _dimage(1, frames[1].tobytes(), "<"),
        _dimage(2, bitshuffle.bitshuffle(frames[2]).tobytes(), "bs32<"),
        [b'{"htype": "dseries_end-1.0", "series": 1}'],
    ]
    receiver, snap = run_series(make_config(sender.port, tmp_path, "Eiger"), sender, messages)
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid) == (3, 0)
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_malformed_v1_messages_are_counted(tmp_path, sender):
    frames = synthetic_frames(2, (40, 30), "uint32", rate=2.0)
    msgs = list(eiger_v1_series(frames, str(tmp_path / "m.h5"), header_detail="basic"))
    bad = [
        _dimage(1, b"garbage", "bs32-lz4<"),  # chunk header missing
        _dimage(1, msgs[2][2], "zstd<"),  # unknown encoding
        _dimage(1, msgs[2][2], "bs32-lz4<", (30,)),  # shape not [x, y]
        msgs[2][:2],  # blob missing
        [b'{"htype": "dheader-1.0", "header_detail": "all", "series": 1}'],  # parts missing
    ]
    receiver, snap = run_series(
        make_config(sender.port, tmp_path, "Eiger"),
        sender,
        [msgs[0], msgs[1], *bad, msgs[2], msgs[3]],
    )
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid) == (2, 5)
