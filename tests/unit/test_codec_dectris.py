"""DECTRIS encodings: the stream v1 encoding string, plain LZ4 blocks, bitshuffle without LZ4,
and the HDF5 LZ4 framing that stream v2 ``lz4`` uses (checked against HDF5's own filter)."""

from __future__ import annotations

import struct

import bitshuffle
import h5py
import hdf5plugin
import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tango_receiver.codecs import dectris
from tango_receiver.codecs.dectris import Encoding, parse_encoding

SETTINGS = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("bs32-lz4<", Encoding(32, True, "<")),
        ("bs16-lz4<", Encoding(16, True, "<")),
        ("bs8-lz4>", Encoding(8, True, ">")),
        ("bs32lz4<", Encoding(32, True, "<")),
        ("lz4<", Encoding(None, True, "<")),
        ("bs32<", Encoding(32, False, "<")),
        ("<", Encoding(None, False, "<")),
        (">", Encoding(None, False, ">")),
        ("bs32-lz4", Encoding(32, True, "<")),
    ],
)
def test_parse_encoding(text, expected):
    assert parse_encoding(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "bs32-lz4<<",
        "bs12-lz4<",
        "bs-lz4<",
        "-lz4<",
        "bs32-<",
        "lz4 <",
        "BS32-LZ4<",
        "bs32-lz4<\n",
        "zstd<",
        "bs32-lz4=",
        None,
        b"lz4<",
    ],
)
def test_parse_encoding_refuses_the_rest(text):
    with pytest.raises(ValueError):
        parse_encoding(text)


def test_is_bslz4():
    assert dectris.is_bslz4(parse_encoding("bs32-lz4<"))
    assert not dectris.is_bslz4(parse_encoding("lz4<"))
    assert not dectris.is_bslz4(parse_encoding("bs32<"))
    assert not dectris.is_bslz4(parse_encoding("<"))


def spell(enc: Encoding, dash: bool) -> str:
    bs = f"bs{enc.bitshuffle_bits}" if enc.bitshuffle_bits else ""
    lz = ("-" if dash and bs else "") + "lz4" if enc.lz4 else ""
    return bs + lz + enc.byteorder


@SETTINGS
@given(
    st.one_of(st.text(max_size=12), st.text(alphabet="bs0123468-lz<>", max_size=12)), st.booleans()
)
def test_parse_encoding_on_random_strings(text, dash):
    try:
        enc = parse_encoding(text)
    except ValueError:
        return
    assert enc.bitshuffle_bits in (None, 8, 16, 32, 64)
    assert enc.byteorder in "<>"
    assert parse_encoding(spell(enc, dash)) == enc


def test_lz4_block_roundtrip_and_errors():
    raw = np.random.default_rng(0).poisson(3, 5000).astype(np.uint32).tobytes()
    blob = lz4.block.compress(raw, store_size=False)
    assert dectris.lz4_block_decompress(blob, len(raw)) == raw
    assert dectris.lz4_block_decompress(memoryview(blob), len(raw)) == raw
    with pytest.raises(ValueError, match="holds 20000 bytes, expected 20004"):
        dectris.lz4_block_decompress(blob, len(raw) + 4)  # python-lz4 alone would accept this
    with pytest.raises(ValueError, match="corrupt"):
        dectris.lz4_block_decompress(blob, len(raw) - 4)
    with pytest.raises(ValueError, match="corrupt"):
        dectris.lz4_block_decompress(blob[:-10], len(raw))
    for nbytes in (0, -1, 2**40):
        with pytest.raises(ValueError, match="outside"):
            dectris.lz4_block_decompress(blob, nbytes)


@SETTINGS
@given(st.binary(max_size=200), st.integers(1, 5000))
def test_lz4_block_garbage_gives_value_error(blob, nbytes):
    try:
        out = dectris.lz4_block_decompress(blob, nbytes)
    except ValueError:
        return
    assert len(out) == nbytes


@pytest.mark.parametrize("dtype", ["<u2", "<u4", ">u4", "<f4"])
def test_bitunshuffle(dtype):
    array = np.random.default_rng(1).poisson(9, (70, 33)).astype(dtype)
    shuffled = bitshuffle.bitshuffle(array, 8192 // array.itemsize).tobytes()
    out = dectris.bitunshuffle(shuffled, array.shape, dtype)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)
    with pytest.raises(ValueError, match="needs"):
        dectris.bitunshuffle(shuffled[:-1], array.shape, dtype)


@pytest.mark.parametrize("block_bytes", [dectris.LZ4_DEFAULT_BLOCK_BYTES, 4096, 1000, 7])
def test_lz4_chunk_roundtrip(block_bytes):
    rng = np.random.default_rng(2)
    raw = np.concatenate([rng.poisson(2, 3000), rng.integers(0, 2**32, 3000)]).astype(np.uint32)
    chunk = dectris.encode_lz4_chunk(raw, block_bytes)
    assert struct.unpack(">QI", chunk[:12]) == (raw.nbytes, min(block_bytes, raw.nbytes))
    assert dectris.decode_lz4_chunk(chunk, raw.nbytes) == raw.tobytes()


def test_lz4_chunk_errors():
    raw = bytes(range(256)) * 40
    chunk = dectris.encode_lz4_chunk(raw, 1024)
    with pytest.raises(ValueError, match="expected 10241"):
        dectris.decode_lz4_chunk(chunk, len(raw) + 1)
    with pytest.raises(ValueError, match="block size of zero"):
        dectris.decode_lz4_chunk(chunk[:8] + b"\0\0\0\0" + chunk[12:], len(raw))
    for end in range(len(chunk)):
        with pytest.raises(ValueError):
            dectris.decode_lz4_chunk(chunk[:end], len(raw))


@SETTINGS
@given(
    st.integers(1, 3000),
    st.integers(16, 3000),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3),
    st.none() | st.integers(0, 10**6),
)
def test_mutated_lz4_chunks_give_value_error_or_bytes(n, block_bytes, flips, cut):
    raw = np.random.default_rng(n).poisson(4, n).astype(np.uint8).tobytes()
    chunk = bytearray(dectris.encode_lz4_chunk(raw, block_bytes))
    if cut is not None:
        del chunk[cut % (len(chunk) + 1) :]
    for where, value in flips:
        if chunk:
            chunk[where % len(chunk)] = value
    try:
        out = dectris.decode_lz4_chunk(bytes(chunk), n)
    except ValueError:
        return
    assert len(out) == n


def test_lz4_chunks_match_the_hdf5_lz4_filter(tmp_path):
    frame = np.random.default_rng(3).poisson(5, (300, 200)).astype(np.uint16)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        written = f.create_dataset(
            "ours", shape=(1, 300, 200), dtype="<u2", chunks=(1, 300, 200), **hdf5plugin.LZ4()
        )
        written.id.write_direct_chunk((0, 0, 0), dectris.encode_lz4_chunk(frame, 16384))
        f.create_dataset("theirs", data=frame[None], chunks=(1, 300, 200), **hdf5plugin.LZ4())
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_array_equal(f["ours"][0], frame)
        _, chunk = f["theirs"].id.read_direct_chunk((0, 0, 0))
    assert dectris.decode_lz4_chunk(chunk, frame.nbytes) == frame.tobytes()
