"""Bitshuffle-LZ4 chunks: round trips, the real EIGER capture, HDF5 compatibility, and
corrupt input that must give ValueError (bitshuffle itself segfaults on a truncated chunk)."""

from __future__ import annotations

import functools
import json
import struct
import zipfile
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tango_receiver.codecs import bslz4
from tango_receiver.codecs.limits import MAX_NBYTES

DTYPES = ["<u1", "<u2", "<u4", "<u8", "<i2", "<i4", "<f4", "<f8"]
small_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40),
        elements=hnp.from_dtype(np.dtype(dt), allow_nan=False),
    )
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@functools.cache
def v1_images(fixtures: Path) -> list[tuple[dict, bytes]]:
    """(dimage_d header, blob) of every image in the captured EIGER 1M stream v1 series."""
    import cbor2

    images = []
    with zipfile.ZipFile(fixtures / "captured" / "eiger-stream-v1-eiger1-1m.zip") as zf:
        with zf.open(zf.namelist()[0]) as fp:
            decoder = cbor2.CBORDecoder(fp, tag_hook=lambda tag, immutable: tag)
            while True:
                try:
                    item = decoder.decode()
                except cbor2.CBORDecodeEOF:
                    break
                _, payload = item.value
                parts = payload["eigerxes"].value[1]
                if json.loads(parts[0])["htype"] == "dimage-1.0":
                    images.append((json.loads(parts[1]), parts[2]))
    return images


@SETTINGS
@given(small_arrays)
def test_roundtrip(array):
    chunk = bslz4.encode_chunk(array)
    nbytes, block_bytes = bslz4.chunk_header(chunk)
    assert (nbytes, block_bytes) == (array.nbytes, 8192)
    out = bslz4.decode_chunk(chunk, array.shape, array.dtype)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_header_is_big_endian_size_then_block_bytes():
    array = np.arange(1000, dtype=np.uint16)
    chunk = bslz4.encode_chunk(array)
    assert struct.unpack(">QI", chunk[:12]) == (2000, 8192)
    assert bslz4.default_block_elements(2) == 4096
    assert bslz4.default_block_elements(4) == 2048


def test_non_contiguous_input_is_encoded_as_its_values():
    array = np.arange(400, dtype=np.uint32).reshape(20, 20)[:, ::2]
    chunk = bslz4.encode_chunk(array)
    np.testing.assert_array_equal(bslz4.decode_chunk(chunk, (20, 10), np.uint32), array)


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8), zmq.Frame],
    ids=["bytes", "bytearray", "memoryview", "numpy", "zmq.Frame"],
)
def test_decode_takes_any_buffer(wrap):
    array = np.random.default_rng(1).poisson(3, (33, 47)).astype(np.uint32)
    out = bslz4.decode_chunk(wrap(bslz4.encode_chunk(array)), (33, 47), "<u4")
    np.testing.assert_array_equal(out, array)


def test_shape_mismatch_names_both_sizes():
    chunk = bslz4.encode_chunk(np.zeros((10, 10), np.uint16))
    with pytest.raises(ValueError, match=r"200 bytes.*\(10, 11\).*220"):
        bslz4.decode_chunk(chunk, (10, 11), np.uint16)


@pytest.mark.parametrize(
    "chunk, match",
    [
        (b"\x00" * 11, "shorter than"),
        (struct.pack(">QI", 100, 0), "block size 0"),
        (struct.pack(">QI", 100, 12), "block size 12"),
        (struct.pack(">QI", 10**12, 8192), "claims 1000000000000 bytes"),
        (struct.pack(">QI", MAX_NBYTES + 1, 8192), "more than"),
    ],
)
def test_chunk_header_refuses_impossible_values(chunk, match):
    with pytest.raises(ValueError, match=match):
        bslz4.chunk_header(chunk + b"\x00" * 16 * (len(chunk) == 12))


def test_lying_header_is_refused_before_allocation():
    chunk = struct.pack(">QI", 10**12, 8192) + b"\x00" * 4
    with pytest.raises(ValueError):
        bslz4.decode_chunk(chunk, (10**6, 10**6), np.uint8)  # shape refused too
    with pytest.raises(ValueError, match="more than"):
        bslz4.decode_chunk(chunk, (1000, 1000), np.uint8)


def test_block_size_must_hold_whole_groups_of_eight_elements():
    array = np.arange(64, dtype=np.uint32)
    chunk = bytearray(bslz4.encode_chunk(array))
    chunk[8:12] = struct.pack(">I", 16)  # 4 uint32: bitshuffle would fail with error -81
    with pytest.raises(ValueError, match="multiple of 8 elements"):
        bslz4.decode_chunk(bytes(chunk), (64,), np.uint32)


def test_zero_block_size_is_not_bitshuffle_auto_select():
    chunk = bytearray(bslz4.encode_chunk(np.arange(64, dtype=np.uint8)))
    chunk[8:12] = b"\x00" * 4
    with pytest.raises(ValueError, match="block size 0"):
        bslz4.decode_chunk(bytes(chunk), (64,), np.uint8)


def test_refuses_non_numeric_dtype():
    with pytest.raises(ValueError, match="cannot bitshuffle"):
        bslz4.encode_chunk(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="cannot bitshuffle"):
        bslz4.decode_chunk(bslz4.encode_chunk(np.zeros(8, np.uint8)), (1,), "V8")


def test_every_truncation_is_refused():
    array = np.random.default_rng(2).poisson(5, (3, 1111)).astype(np.uint16)  # tail of 5 raw
    chunk = bslz4.encode_chunk(array)
    for end in range(len(chunk)):
        with pytest.raises(ValueError):
            bslz4.decode_chunk(chunk[:end], array.shape, array.dtype)
        with pytest.raises(ValueError):
            bslz4.check_chunk(chunk[:end], array.shape, array.dtype)
    bslz4.check_chunk(chunk, array.shape, array.dtype)


mutations = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=4)


def mutate(chunk: bytes, cut: int | None, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(chunk if cut is None else chunk[: cut % (len(chunk) + 1)])
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    return bytes(data)


def decode_or_value_error(chunk: bytes, shape, dtype) -> None:
    try:
        out = bslz4.decode_chunk(chunk, shape, dtype)
    except ValueError:
        return
    assert out.shape == tuple(shape) and out.dtype == np.dtype(dtype)


@SETTINGS
@given(small_arrays, st.none() | st.integers(0, 10**9), mutations)
def test_mutated_chunks_give_value_error_or_an_array(array, cut, flips):
    chunk = mutate(bslz4.encode_chunk(array), cut, flips)
    decode_or_value_error(chunk, array.shape, array.dtype)


@SETTINGS
@given(st.integers(0, 8), st.none() | st.integers(0, 10**9), mutations)
def test_mutated_real_chunks_give_value_error_or_an_array(fixtures_dir, index, cut, flips):
    desc, blob = v1_images(fixtures_dir)[index]
    # header and block table are where a flip does the most damage: aim half the flips there
    flips = [(w % 64 if i % 2 else w, v) for i, (w, v) in enumerate(flips)]
    decode_or_value_error(mutate(blob, cut, flips), (1065, 1030), "<u4")


def test_real_eiger_v1_capture(fixtures_dir):
    images = v1_images(fixtures_dir)
    assert len(images) == 9
    for desc, blob in images:
        assert desc["encoding"] == "bs32-lz4<" and desc["shape"] == [1030, 1065]
        assert bslz4.chunk_header(blob) == (1065 * 1030 * 4, 8192)
        pixels = bslz4.decode_chunk(blob, (1065, 1030), "<u4")
        assert pixels.shape == (1065, 1030) and pixels.dtype == np.uint32
        assert 0 < np.count_nonzero(pixels) < pixels.size
        again = bslz4.encode_chunk(pixels)
        np.testing.assert_array_equal(bslz4.decode_chunk(again, pixels.shape, "<u4"), pixels)


def test_hdf5_reads_chunks_written_as_they_are(tmp_path, fixtures_dir):
    """The whole point of the framing: HDF5's bitshuffle filter reads our chunks directly."""
    real = bslz4.decode_chunk(v1_images(fixtures_dir)[0][1], (1065, 1030), "<u4")
    frames = [np.random.default_rng(3).poisson(2, (1065, 1030)).astype(np.uint32), real]
    with h5py.File(tmp_path / "f.h5", "w") as f:
        dset = f.create_dataset(
            "d",
            shape=(2, 1065, 1030),
            dtype="<u4",
            chunks=(1, 1065, 1030),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
        for i, frame in enumerate(frames):
            dset.id.write_direct_chunk((i, 0, 0), bslz4.encode_chunk(frame))
    with h5py.File(tmp_path / "f.h5") as f:
        for i, frame in enumerate(frames):
            np.testing.assert_array_equal(f["d"][i], frame)


def test_decodes_chunks_written_by_hdf5(tmp_path):
    frame = np.random.default_rng(4).poisson(7, (257, 300)).astype(np.uint16)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset(
            "d",
            data=frame[None],
            chunks=(1, 257, 300),
            **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
        )
    with h5py.File(tmp_path / "f.h5") as f:
        _, chunk = f["d"].id.read_direct_chunk((0, 0, 0))
    np.testing.assert_array_equal(bslz4.decode_chunk(chunk, frame.shape, "<u2"), frame)


@pytest.mark.skipif(bslz4.walk_blocks is bslz4.walk_blocks_py, reason="compiled walk not built")
@settings(max_examples=300, deadline=None)
@given(table=st.binary(max_size=200), n_blocks=st.integers(-2, 60))
def test_compiled_block_walk_follows_the_table_as_python_does(table, n_blocks):
    """Any bytes after a 12-byte header, any block count: the same end, or the same refusal."""
    chunk = memoryview(b"\0" * 12 + table)
    assert bslz4.walk_blocks(chunk, n_blocks) == bslz4.walk_blocks_py(chunk, n_blocks)


def test_block_walk_of_a_real_frame_ends_where_the_raw_tail_starts():
    frame = np.arange(999 * 1001, dtype=np.uint32).reshape(999, 1001) % 7
    chunk = memoryview(bslz4.encode_chunk(frame))
    _, n_blocks, tail = bslz4.block_table(chunk, frame.shape, frame.dtype)
    assert tail == 7 * 4 and n_blocks == 489  # 999,999 elements, 2048 a block
    assert bslz4.walk_blocks(chunk, n_blocks) == (len(chunk) - tail, True)
    assert bslz4.walk_blocks(chunk[:100], n_blocks)[1] is False  # cut inside the table
    with pytest.raises(ValueError, match="truncated"):  # cut inside the raw tail
        bslz4.check_chunk(chunk[:-1], frame.shape, frame.dtype)


@pytest.mark.skipif(bslz4.walk_blocks is bslz4.walk_blocks_py, reason="compiled walk not built")
@pytest.mark.parametrize("kind", ["sparse", "noise"])
def test_compiled_walk_agrees_with_python_for_small_and_large_blocks(kind):
    """The compiled walk asks for lines ahead one way for small blocks and another for large
    ones (bslz4_table.h); either way it follows the table as Python does, to the same end or
    the same refusal, however the chunk is cut."""
    rng = np.random.default_rng(5)
    if kind == "sparse":  # blocks of a few dozen bytes
        frame = (rng.random((700, 700)) < 0.002).astype(np.uint32)
    else:  # incompressible: blocks of the full 8 kB
        frame = rng.integers(0, 2**32, (700, 700), dtype=np.uint32)
    chunk = memoryview(bslz4.encode_chunk(frame))
    _, n_blocks, tail = bslz4.block_table(chunk, frame.shape, frame.dtype)
    mean_block = (len(chunk) - 12 - tail) / n_blocks
    assert mean_block < 1024 if kind == "sparse" else mean_block > 8192
    for end in (len(chunk), len(chunk) - tail - 1, len(chunk) // 2, 5000, 13):
        view = chunk[:end]
        assert bslz4.walk_blocks(view, n_blocks) == bslz4.walk_blocks_py(view, n_blocks)
    assert bslz4.walk_blocks(chunk, n_blocks) == (len(chunk) - tail, True)
