"""Pilatus CBF: round trips, agreement with fabio's own reader and writer, and truncated or
corrupt files that must give ValueError (timings and the GIL finding: see the codec's
docstring)."""

from __future__ import annotations

import re

import fabio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tango_receiver.codecs.cbf import MARKER, decode_cbf, encode_cbf

SETTINGS = settings(max_examples=150, deadline=None)
INT32 = np.iinfo(np.int32)
# Values that exercise every byte-offset escape: 1-byte, 2-byte and 4-byte deltas.
pixel_values = st.one_of(
    st.integers(-3, 3),
    st.integers(-200, 200),
    st.integers(-40000, 40000),
    st.integers(INT32.min, INT32.max),
)
images = hnp.arrays(
    np.int32,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=pixel_values,
)


def pilatus_like(shape=(195, 487), seed=0) -> np.ndarray:
    image = np.random.default_rng(seed).poisson(10, shape).astype(np.int32)
    image[0, :4] = [INT32.max, INT32.min, -1, -2]  # gaps and dead pixels are negative
    return image


def has_half_range_step(image: np.ndarray) -> bool:
    return bool(np.any(np.abs(np.diff(image.ravel().astype(np.int64), prepend=0)) == 2**31))


@SETTINGS
@given(images)
def test_roundtrip(image):
    if has_half_range_step(image):
        with pytest.raises(ValueError, match="2\\*\\*31"):
            encode_cbf(image)
        return
    out = decode_cbf(encode_cbf(image))
    assert out.dtype == np.int32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_fabio_reads_what_we_write(tmp_path):
    image = pilatus_like()
    path = tmp_path / "image.cbf"
    path.write_bytes(encode_cbf(image))
    read = fabio.open(str(path))
    assert read.data.dtype == np.int32
    np.testing.assert_array_equal(read.data, image)


def test_we_read_what_fabio_writes(tmp_path):
    image = pilatus_like((100, 77), seed=1)
    path = tmp_path / "fabio.cbf"
    fabio.cbfimage.CbfImage(data=image).write(str(path))
    np.testing.assert_array_equal(decode_cbf(path.read_bytes()), image)


def test_header_is_a_pilatus_minicbf():
    blob = encode_cbf(np.zeros((3, 5), np.int32))
    head = blob[: blob.index(MARKER)].decode("ascii")
    assert head.startswith("###CBF: VERSION 1.5\r\n")
    for line in [
        "_array_data.data",
        ";",
        "--CIF-BINARY-FORMAT-SECTION--",
        "Content-Type: application/octet-stream;",
        '     conversions="x-CBF_BYTE_OFFSET"',
        "Content-Transfer-Encoding: BINARY",
        "X-Binary-Size: 15",
        "X-Binary-ID: 1",
        'X-Binary-Element-Type: "signed 32-bit integer"',
        "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
        "X-Binary-Number-of-Elements: 15",
        "X-Binary-Size-Fastest-Dimension: 5",
        "X-Binary-Size-Second-Dimension: 3",
        "X-Binary-Size-Padding: 4095",
    ]:
        assert line in head.split("\r\n")
    assert head.endswith("\r\n\r\n")
    assert blob.endswith(b"\0" * 4095 + b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n")


@pytest.mark.parametrize(
    "wrap", [bytes, bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)]
)
def test_decode_takes_any_buffer(wrap):
    image = pilatus_like((20, 30))
    np.testing.assert_array_equal(decode_cbf(wrap(encode_cbf(image))), image)


def test_steps_fabio_would_corrupt_are_refused():
    """fabio's comp_cbf32 writes a -2**31 step as a single 0 byte: found by the roundtrip."""
    for pixels in ([[INT32.min]], [[5, 5 + INT32.min]], [[-1, INT32.max]]):
        with pytest.raises(ValueError, match="2\\*\\*31"):
            encode_cbf(np.array(pixels, np.int64))
    wraps = np.array([[INT32.max, INT32.min, INT32.max, 7]], np.int32)  # steps of +-(2**32 - 1)
    np.testing.assert_array_equal(decode_cbf(encode_cbf(wraps)), wraps)


def test_encode_refuses_what_cbf_cannot_hold():
    with pytest.raises(ValueError, match="2-D"):
        encode_cbf(np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="integers"):
        encode_cbf(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="32-bit"):
        encode_cbf(np.full((2, 2), 2**31, np.int64))
    np.testing.assert_array_equal(decode_cbf(encode_cbf(np.full((2, 2), 7, np.uint16))), 7)


def edit(blob: bytes, field: str, value: str) -> bytes:
    return re.sub(rf"{field}: [^\r]*".encode(), f"{field}: {value}".encode(), blob, count=1)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("X-Binary-Size", "", "X-Binary-Size is not a plain"),
        ("X-Binary-Size", "-5", "not a plain"),
        ("X-Binary-Size", "99999999999999999", "not a plain"),
        ("X-Binary-Size-Fastest-Dimension", "0", "positive"),
        ("X-Binary-Size-Second-Dimension", "100000000", "more than"),
        ("X-Binary-Number-of-Elements", "3", "says 3 elements"),
        ("X-Binary-Element-Type", '"signed 16-bit integer"', "not 'signed 32-bit integer'"),
        (
            "Content-Type",
            'application/octet-stream;\r\n     conversions="x-CBF_PACKED"',
            "not x-CBF_BYTE_OFFSET",
        ),
    ],
)
def test_header_checks(field, value, match):
    blob = encode_cbf(pilatus_like((20, 30)))
    if field == "Content-Type":
        blob = blob.replace(b'conversions="x-CBF_BYTE_OFFSET"', b'conversions="x-CBF_PACKED"')
    else:
        blob = edit(blob, field, value)
    with pytest.raises(ValueError, match=match):
        decode_cbf(blob)


def test_missing_pieces():
    blob = encode_cbf(pilatus_like((20, 30)))
    with pytest.raises(ValueError, match="no CBF binary marker"):
        decode_cbf(blob.replace(MARKER, b"XXXX"))
    with pytest.raises(ValueError, match="lacks X-Binary-Size-Second-Dimension"):
        decode_cbf(blob.replace(b"X-Binary-Size-Second-Dimension", b"X-Other"))
    with pytest.raises(ValueError, match="no --CIF-BINARY-FORMAT-SECTION--"):
        decode_cbf(blob.replace(b"--CIF-BINARY-FORMAT-SECTION--\r\n", b""))


def test_every_truncation_of_the_binary_section_is_refused():
    image = pilatus_like((8, 9))
    blob = encode_cbf(image)
    start = blob.index(MARKER)
    size = int(re.search(rb"X-Binary-Size: (\d+)", blob).group(1))
    for end in range(start + 4 + size):
        with pytest.raises(ValueError):
            decode_cbf(blob[:end])


@pytest.mark.parametrize("short_by", range(1, 8))
def test_escape_running_past_the_binary_size_is_refused(short_by):
    """fabio's decoder would read past the buffer here; the sentinel catches it."""
    image = np.zeros((4, 4), np.int32)
    image[-1, -1] = 1 << 20  # the stream ends with a 7-byte escape: 80 00 80 xx xx xx xx
    blob = encode_cbf(image)
    size = int(re.search(rb"X-Binary-Size: (\d+)", blob).group(1))
    with pytest.raises(ValueError, match="does not decode to exactly 16|cannot hold 16"):
        decode_cbf(edit(blob, "X-Binary-Size", str(size - short_by)))


def test_too_few_or_too_many_pixels_are_refused():
    image = np.zeros((20, 30), np.int32)
    image[:, ::2] = 1000  # every step is a 3-byte escape: 1800 bytes for 600 pixels
    blob = encode_cbf(image)
    for rows in (19, 21):
        claim = edit(blob, "X-Binary-Number-of-Elements", str(rows * 30))
        with pytest.raises(ValueError, match=f"does not decode to exactly {rows * 30} pixels"):
            decode_cbf(edit(claim, "X-Binary-Size-Second-Dimension", str(rows)))
    claim = edit(blob, "X-Binary-Number-of-Elements", "60000")
    with pytest.raises(ValueError, match="cannot hold 60000 pixels"):
        decode_cbf(edit(claim, "X-Binary-Size-Second-Dimension", "2000"))


@SETTINGS
@given(
    st.integers(0, 5),
    st.none() | st.integers(0, 10**6),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
)
def test_mutated_files_give_value_error_or_an_image(seed, cut, flips):
    blob = bytearray(encode_cbf(pilatus_like((13, 17), seed)))
    if cut is not None:
        del blob[cut % (len(blob) + 1) :]
    for where, value in flips:
        if blob:
            blob[where % min(len(blob), 1200)] = value  # header and binary, not the padding
    try:
        out = decode_cbf(bytes(blob))
    except ValueError:
        return
    assert out.dtype == np.int32 and out.ndim == 2
