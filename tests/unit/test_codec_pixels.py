"""Small pixel codecs: shape/type limits, Mono12p (Orca Lightning), live-view binning."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tango_receiver.codecs import mono12p
from tango_receiver.codecs.downsample import block_mean
from tango_receiver.codecs.limits import MAX_PIXELS, byte_view, check_shape, dtype_of

SETTINGS = settings(max_examples=200, deadline=None)


def test_check_shape():
    assert check_shape([1065, 1030]) == (1065, 1030)
    assert check_shape((np.int64(3), 4, 5)) == (3, 4, 5)
    assert check_shape((MAX_PIXELS,)) == (MAX_PIXELS,)
    for bad, match in [
        ((), "1 to 3"),
        ((1, 2, 3, 4), "1 to 3"),
        ((0, 5), "positive"),
        ((-1, 5), "positive"),
        ((2.5, 2), "integers"),
        (("2", 2), "integers"),
        ((MAX_PIXELS + 1,), "more than"),
        ((10**5, 10**5), "more than"),
        (5, "sequence"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_shape(bad)


def test_dtype_of():
    assert dtype_of("uint32") == np.dtype("<u4")
    assert dtype_of("uint16", ">") == np.dtype(">u2")
    assert dtype_of("float32") == np.dtype("<f4")
    assert dtype_of("uint8", ">") == np.dtype("u1")
    for bad in ("object", "str", "V8", "void", "complex64", "<u4", "uint24", ""):
        with pytest.raises(ValueError, match="unsupported pixel type"):
            dtype_of(bad)
    with pytest.raises(ValueError, match="byte order"):
        dtype_of("uint16", "=")


def test_byte_view():
    assert byte_view(np.arange(3, dtype=">u4")).tobytes() == np.arange(3, dtype=">u4").tobytes()
    with pytest.raises(ValueError, match="contiguous"):
        byte_view(np.arange(10)[::2])
    with pytest.raises(ValueError, match="buffer"):
        byte_view("text")


def test_mono12p_hand_computed():
    packed = bytes([0x23, 0xC1, 0xAB, 0xFF, 0x0F, 0x00, 0x00, 0xF0, 0xFF])
    pixels = [0x123, 0xABC, 0xFFF, 0x000, 0x000, 0xFFF]
    np.testing.assert_array_equal(mono12p.unpack(packed, (3, 2)), np.reshape(pixels, (3, 2)))
    assert mono12p.unpack(packed, (6,)).dtype == np.uint16
    assert mono12p.pack(np.array(pixels, np.uint16)) == packed


@SETTINGS
@given(
    hnp.arrays(
        np.uint16,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=20),
        elements=st.integers(0, 4095),
    ).filter(lambda a: a.size % 2 == 0)
)
def test_mono12p_roundtrip(frame):
    packed = mono12p.pack(frame)
    assert len(packed) == frame.size * 3 // 2
    np.testing.assert_array_equal(mono12p.unpack(packed, frame.shape), frame)
    np.testing.assert_array_equal(mono12p.unpack(memoryview(packed), frame.shape), frame)


def test_mono12p_errors():
    with pytest.raises(ValueError, match="needs 6 bytes, got 5"):
        mono12p.unpack(b"\0" * 5, (2, 2))
    with pytest.raises(ValueError, match="even pixel count"):
        mono12p.unpack(b"\0" * 6, (3,))
    with pytest.raises(ValueError, match="even pixel count"):
        mono12p.pack(np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="0..4095"):
        mono12p.pack(np.array([4096, 0]))
    with pytest.raises(ValueError, match="0..4095"):
        mono12p.pack(np.array([-1, 0]))
    with pytest.raises(ValueError, match="integers"):
        mono12p.pack(np.zeros(2, np.float32))


def reference_block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    *lead, rows, cols = array.shape
    r, c = rows // factor, cols // factor
    blocks = array[..., : r * factor, : c * factor].reshape(*lead, r, factor, c, factor)
    return blocks.astype(np.float64).mean(axis=(-3, -1))


@SETTINGS
@given(
    hnp.arrays(
        st.sampled_from([np.uint16, np.uint32, np.int32, np.float32, np.float64]),
        hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=24),
        elements=st.integers(0, 65535),
    ),
    st.integers(1, 6),
)
def test_block_mean_matches_reference(array, factor):
    if factor > min(array.shape[-2:]):
        with pytest.raises(ValueError, match="larger than the image"):
            block_mean(array, factor)
        return
    out = block_mean(array, factor)
    if factor == 1:
        assert out is array
        return
    assert out.dtype == np.float32
    assert out.shape == (*array.shape[:-2], array.shape[-2] // factor, array.shape[-1] // factor)
    np.testing.assert_allclose(out, reference_block_mean(array, factor), rtol=1e-6)


def test_block_mean_by_hand_and_errors():
    image = np.arange(20, dtype=np.uint32).reshape(4, 5)
    np.testing.assert_array_equal(block_mean(image, 2), [[3, 5], [13, 15]])
    with pytest.raises(ValueError, match="at least 1"):
        block_mean(image, 0)
    with pytest.raises(ValueError, match="2 dimensions"):
        block_mean(np.arange(8), 2)
