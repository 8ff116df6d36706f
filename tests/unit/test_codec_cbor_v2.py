"""DECTRIS stream v2 (CBOR): DECTRIS' own test data, a captured series, typed-array tags,
encode/decode round trips and malformed messages."""

from __future__ import annotations

import functools
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import cbor2
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tango_receiver.codecs import bslz4, cbor_v2
from tango_receiver.codecs.cbor_v2 import Compressed, MultiDimArray, TypedArray
from tango_receiver.codecs.dectris import encode_lz4_chunk

R500K = "dectris-stream-v2-r500k-bslz4-16bit"
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@functools.cache
def captured_series(fixtures: Path) -> list[bytes]:
    """The 12 messages of the captured series (a file of pickled one-part message lists)."""
    messages = []
    with zipfile.ZipFile(fixtures / "captured" / "dectris-stream-v2-series.zip") as zf:
        with zf.open(zf.namelist()[0]) as fp:
            while True:
                try:
                    (part,) = pickle.load(fp)
                except EOFError:
                    break
                messages.append(part)
    return messages


def plain(value):
    """Lists and tuples alike: cbor2 gives tuples inside the self-describe tag."""
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def test_dectris_r500k_test_data(fixtures_dir):
    for i in range(1, 11):
        msg = cbor_v2.decode((fixtures_dir / R500K / f"{i:06d}.cbor").read_bytes())
        assert isinstance(msg, Mapping) and msg["type"] == "image" and msg["image_id"] == i - 1
        assert list(msg["data"]) == ["threshold_1", "threshold_2", "difference"]
        for value in msg["data"].values():
            assert isinstance(value, MultiDimArray) and value.shape == (514, 1030)
            assert isinstance(value.array.data, Compressed)
            assert value.array.data.algorithm == "bslz4" and value.array.data.elem_size == 2
            pixels = cbor_v2.to_numpy(value)
            assert pixels.shape == (514, 1030) and pixels.dtype == np.dtype("<u2")
        t1, t2, diff = (cbor_v2.to_numpy(v) for v in msg["data"].values())
        assert t1.max() < 100 and t2.max() < 100 and diff.max() > 60000  # gaps are 0xFFFF
    end = cbor_v2.decode((fixtures_dir / R500K / "000011.cbor").read_bytes())
    assert dict(end) == {
        "type": "end",
        "series_id": 1,
        "series_unique_id": "01GRXWT80JSDY2FNW8SGCCDZD9",
    }


def test_decode_takes_any_buffer(fixtures_dir):
    data = (fixtures_dir / R500K / "000002.cbor").read_bytes()
    for wrap in (bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8), zmq.Frame):
        msg = cbor_v2.decode(wrap(data))
        assert msg["image_id"] == 1 and msg["data"]["threshold_1"].shape == (514, 1030)


def test_captured_series(fixtures_dir):
    messages = [cbor_v2.decode(m) for m in captured_series(fixtures_dir)]
    assert [m["type"] for m in messages] == ["start"] + ["image"] * 10 + ["end"]
    start = messages[0]
    assert isinstance(json.loads(start["user_data"]), dict)
    assert plain(start["channels"]) == ["threshold_1"]
    flatfield = cbor_v2.to_numpy(start["flatfield"]["threshold_1"])
    mask = cbor_v2.to_numpy(start["pixel_mask"]["threshold_1"])
    table = cbor_v2.to_numpy(start["countrate_correction_lookup_table"])
    assert flatfield.shape == mask.shape == (1065, 1030)
    assert (flatfield.dtype, mask.dtype, table.dtype) == (
        np.dtype("<f4"),
        np.dtype("<u4"),
        np.dtype("<u4"),
    )
    assert table.ndim == 1 and table.size == 65536
    for index, image in enumerate(messages[1:-1]):
        assert image["image_id"] == index
        value = image["data"]["threshold_1"]
        assert value.shape == (1065, 1030) and value.array.data.elem_size == 4
        pixels = cbor_v2.to_numpy(value)
        assert pixels.shape == (1065, 1030) and pixels.dtype == np.dtype("<u4")
        assert 0 < np.count_nonzero(pixels) < pixels.size


@pytest.mark.parametrize(
    "tag, dtype",
    [
        (64, "u1"),
        (65, ">u2"),
        (66, ">u4"),
        (67, ">u8"),
        (68, "u1"),
        (69, "<u2"),
        (70, "<u4"),
        (71, "<u8"),
        (72, "i1"),
        (73, ">i2"),
        (74, ">i4"),
        (75, ">i8"),
        (77, "<i2"),
        (78, "<i4"),
        (79, "<i8"),
        (80, ">f2"),
        (81, ">f4"),
        (82, ">f8"),
        (84, "<f2"),
        (85, "<f4"),
        (86, "<f8"),
    ],
)
def test_typed_array_tags(tag, dtype):
    values = np.array([0, 1, 2, 100], dtype=dtype)
    typed = cbor2.CBORTag(tag, values.tobytes())
    msg = cbor_v2.decode(cbor2.dumps({"a": typed, "m": cbor2.CBORTag(40, [[2, 2], typed])}))
    assert isinstance(msg["a"], TypedArray) and msg["a"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(cbor_v2.to_numpy(msg["a"]), values)
    np.testing.assert_array_equal(cbor_v2.to_numpy(msg["m"]), values.reshape(2, 2))


@pytest.mark.parametrize("tag", [76, 83, 87])
def test_reserved_and_unsupported_typed_array_tags(tag):
    with pytest.raises(ValueError, match="tag 76 is reserved|float128"):
        cbor_v2.decode(cbor2.dumps({"a": cbor2.CBORTag(tag, b"\0" * 16)}))


@pytest.mark.parametrize(
    "value, match",
    [
        (cbor2.CBORTag(40, [[2, 2]]), "tag 40 must hold"),
        (cbor2.CBORTag(40, [[2, "x"], cbor2.CBORTag(64, b"1234")]), "shape"),
        (cbor2.CBORTag(40, [[2, 2], [1, 2, 3, 4]]), "typed array"),
        (cbor2.CBORTag(70, "text"), "holds a str"),
        (cbor2.CBORTag(56500, ["bslz4", 2]), "56500 must hold"),
        (cbor2.CBORTag(56500, ["bslz4", "2", b""]), "56500 must hold"),
    ],
)
def test_malformed_tags(value, match):
    with pytest.raises(ValueError, match=match):
        cbor_v2.decode(cbor2.dumps(cbor2.CBORTag(55799, {"data": value})))


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "invalid"),
        (b"\xff\xff", "invalid"),
        (cbor2.dumps([1, 2]), "not a map"),
        (cbor2.dumps(cbor2.CBORTag(55799, "x")), "not a map"),
    ],
)
def test_malformed_messages(data, match):
    with pytest.raises(ValueError, match=match):
        cbor_v2.decode(data)


def test_to_numpy_checks_payloads():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    raw = TypedArray(np.dtype("<u2"), image.tobytes())
    with pytest.raises(ValueError, match="needs 26"):
        cbor_v2.to_numpy(MultiDimArray((13,), raw))
    with pytest.raises(ValueError, match="positive"):
        cbor_v2.to_numpy(MultiDimArray((0, 4), raw))
    with pytest.raises(ValueError, match="more than"):
        cbor_v2.to_numpy(MultiDimArray((2**20, 2**20), raw))
    with pytest.raises(ValueError, match="whole number"):
        cbor_v2.to_numpy(TypedArray(np.dtype("<u2"), b"abc"))
    chunk = bslz4.encode_chunk(image)
    with pytest.raises(ValueError, match="element size 4"):
        cbor_v2.to_numpy(
            MultiDimArray((3, 4), TypedArray(np.dtype("<u2"), Compressed("bslz4", 4, chunk)))
        )
    with pytest.raises(ValueError, match="unknown stream v2 compression 'zstd'"):
        cbor_v2.to_numpy(
            MultiDimArray((3, 4), TypedArray(np.dtype("<u2"), Compressed("zstd", 2, chunk)))
        )
    with pytest.raises(ValueError, match="not a stream v2 array"):
        cbor_v2.to_numpy(image)


def test_one_dimensional_compressed_typed_arrays_take_their_length_from_the_chunk():
    table = np.arange(1000, dtype=np.uint32)
    for algorithm, elem_size, chunk in (
        ("bslz4", 4, bslz4.encode_chunk(table)),
        ("lz4", 0, encode_lz4_chunk(table)),
    ):
        value = TypedArray(np.dtype("<u4"), Compressed(algorithm, elem_size, chunk))
        np.testing.assert_array_equal(cbor_v2.to_numpy(value), table)


def test_big_endian_arrays_survive_bslz4():
    image = np.arange(24, dtype=">u4").reshape(4, 6)
    msg = cbor_v2.decode(
        cbor2.dumps(
            {
                "m": cbor2.CBORTag(
                    40,
                    [
                        [4, 6],
                        cbor2.CBORTag(
                            66, cbor2.CBORTag(56500, ["bslz4", 4, bslz4.encode_chunk(image)])
                        ),
                    ],
                )
            }
        )
    )
    out = cbor_v2.to_numpy(msg["m"])
    assert out.dtype == np.dtype(">u4")
    np.testing.assert_array_equal(out, image)


def test_encode_is_what_a_detector_sends(fixtures_dir):
    """Re-encoding DECTRIS' data gives the same structure and pixels back."""
    original = cbor_v2.decode((fixtures_dir / R500K / "000001.cbor").read_bytes())
    planes = {name: cbor_v2.to_numpy(value) for name, value in original["data"].items()}
    data = cbor_v2.encode(
        {
            "type": "image",
            "image_id": 0,
            "data": {n: cbor_v2.multidim(p) for n, p in planes.items()},
        }
    )
    assert data[:3] == b"\xd9\xd9\xf7"  # self-described CBOR
    again = cbor_v2.decode(data)
    for name, value in again["data"].items():
        assert value.array.data.algorithm == "bslz4" and value.array.data.elem_size == 2
        assert value.array.dtype == np.dtype("<u2")
        np.testing.assert_array_equal(cbor_v2.to_numpy(value), planes[name])


def test_encode_refuses_what_cbor_cannot_carry():
    with pytest.raises(ValueError, match="cannot encode"):
        cbor_v2.encode({"x": object()})
    with pytest.raises(ValueError, match="cannot send dtype"):
        cbor_v2.multidim(np.array([["a"]]))
    with pytest.raises(ValueError, match="unknown compression"):
        cbor_v2.multidim(np.zeros((2, 2)), "zstd")


DTYPES = ["u1", "<u2", "<u4", "<u8", "i1", ">i2", "<i4", "<i8", "<f2", "<f4", ">f8"]
arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=30),
        elements=hnp.from_dtype(np.dtype(dt), allow_nan=False),
    )
)
fields = st.dictionaries(
    st.text(max_size=8),
    st.one_of(
        st.integers(-(2**63), 2**64 - 1),
        st.text(max_size=10),
        st.floats(allow_nan=False),
        st.lists(st.integers(0, 9), max_size=3),
        st.booleans(),
        st.none(),
    ),
    max_size=4,
)


@SETTINGS
@given(
    fields,
    st.dictionaries(st.text(min_size=1, max_size=8), arrays, min_size=1, max_size=3),
    st.sampled_from(["bslz4", "lz4", None]),
)
def test_roundtrip(meta, planes, compression):
    message = {**meta, "type": "image", "data": planes, "scalar": np.float32(1.5)}
    decoded = cbor_v2.decode(cbor_v2.encode(message, compression))
    assert decoded["scalar"] == 1.5
    for key, value in meta.items():
        if key not in ("type", "data", "scalar"):
            assert plain(decoded[key]) == value
    for name, plane in planes.items():
        value = decoded["data"][name]
        assert isinstance(value, MultiDimArray) and value.shape == plane.shape
        out = cbor_v2.to_numpy(value)
        assert out.dtype == plane.dtype.newbyteorder("<") and out.shape == plane.shape
        np.testing.assert_array_equal(out, plane)


@SETTINGS
@given(
    st.integers(0, 9),
    st.none() | st.integers(0, 10**7),
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 255)), max_size=3),
)
def test_mutated_messages_give_value_error_or_arrays(fixtures_dir, index, cut, flips):
    data = bytearray(captured_series(fixtures_dir)[1 + index])
    if cut is not None:
        del data[cut % (len(data) + 1) :]
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    try:
        msg = cbor_v2.decode(bytes(data))
    except ValueError:
        return
    planes = msg.get("data")
    for value in planes.values() if isinstance(planes, Mapping) else ():
        if isinstance(value, (MultiDimArray, TypedArray)):
            try:
                cbor_v2.to_numpy(value)
            except ValueError:
                pass
