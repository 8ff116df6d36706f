"""``tango_receiver.client`` on its own: every blob form, the errors that name what is wrong,
the rules that place messages in a series, and the consumer's timeout and close."""

from __future__ import annotations

import json
import struct

import bitshuffle
import numpy as np
import pytest
import zmq
from test_client_live import readme_decode

from tango_receiver.client import (
    Consumer,
    HeaderMessage,
    ImageMessage,
    SeriesEndMessage,
    Unreadable,
    decode_image,
    decode_images,
    endpoint_of,
    parse,
)
from tango_receiver.client.messages import Tracker
from tango_receiver.codecs.bslz4 import HEADER, encode_chunk


def head(shape, dtype, compression="bslz4", **extra) -> dict:
    return {
        "htype": "image",
        "msg_number": 1,
        "frame": 0,
        "shape": list(shape),
        "type": dtype,
        "compression": compression,
    } | extra


def chunk_with_block(array: np.ndarray, block_elements: int) -> bytes:
    """A chunk with a block size other than the default, as an HDF5 writer may choose."""
    blocks = bitshuffle.compress_lz4(array, block_elements).tobytes()
    return HEADER.pack(array.nbytes, block_elements * array.itemsize) + blocks


RAMP = (np.arange(37 * 29, dtype=np.uint32) * 2654435761 % 100003).reshape(37, 29)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "float64"])
@pytest.mark.parametrize("shape", [(3,), (7, 1), (37, 29), (2, 9, 11)])
def test_every_blob_form_decodes_to_the_array(dtype, shape):
    array = RAMP.ravel()[: int(np.prod(shape))].astype(dtype).reshape(shape)
    for compression, blob in (
        ("bslz4", encode_chunk(array)),
        ("bslz4", bitshuffle.compress_lz4(array).tobytes()),  # no header
        ("none", array.tobytes()),
    ):
        for buffer in (blob, memoryview(blob), zmq.Frame(blob), bytearray(blob)):
            got = decode_image(head(shape, dtype, compression), buffer)
            assert got.dtype == array.dtype and got.shape == shape
            assert got.tobytes() == array.tobytes(), (compression, type(buffer))


def test_the_chunk_header_block_size_is_followed_by_client_and_recipe():
    """A block size other than bitshuffle's default: read from the header, by both readers."""
    chunk = chunk_with_block(RAMP, 256)
    assert np.array_equal(decode_image(head(RAMP.shape, "uint32"), chunk), RAMP)
    assert np.array_equal(readme_decode()(head(RAMP.shape, "uint32"), zmq.Frame(chunk)), RAMP)


def test_raw_arrays_are_views_of_the_received_buffer():
    blob = bytearray(RAMP.tobytes())
    got = decode_image(head(RAMP.shape, "uint32", "none"), blob)
    assert np.shares_memory(got, np.frombuffer(blob, np.uint8))


def test_several_arrays_by_name_by_index_and_all_at_once():
    low, high = RAMP.astype(np.uint16), RAMP.astype(np.float32) / 7
    message = head(
        RAMP.shape,
        "uint16",
        channels=[
            {"name": "low", "shape": list(RAMP.shape), "type": "uint16", "compression": "bslz4"},
            {"name": "high", "shape": list(RAMP.shape), "type": "float32"},
        ],
    )
    blobs = [encode_chunk(low), high.tobytes()]
    arrays = decode_images(message, blobs)
    assert list(arrays) == ["low", "high"]
    assert np.array_equal(arrays["low"], low) and np.array_equal(arrays["high"], high)
    assert np.array_equal(decode_image(message, blobs[1], channel="high"), high)
    assert np.array_equal(decode_image(message, blobs[0], channel=0), low)
    with pytest.raises(ValueError, match=r"image of 2 arrays \(low, high\).*decode_images"):
        decode_image(message, blobs[0])
    with pytest.raises(ValueError, match="no channel 'mid'; the image has low, high"):
        decode_image(message, blobs[0], channel="mid")
    with pytest.raises(ValueError, match="image of 2 arrays came with 1 blobs"):
        decode_images(message, blobs[:1])


def lying_length(chunk: bytes) -> bytes:
    """The first block's length pointing far past the end: what makes bitshuffle read out of
    bounds."""
    return chunk[:12] + struct.pack(">I", 2**31) + chunk[16:]


CHUNK = encode_chunk(RAMP)


@pytest.mark.parametrize(
    "message, blob, error",
    [
        (
            head(RAMP.shape, "uint32"),
            lying_length(CHUNK),
            "truncated: 1 blocks and 4 raw tail bytes take 2147483668 bytes",
        ),
        (head(RAMP.shape, "uint32"), CHUNK[:-5], "truncated"),
        (head(RAMP.shape, "uint32"), CHUNK[:12], "truncated"),
        (
            head((29, 37, 2), "uint32"),
            CHUNK,
            "chunk holds 4292 bytes but shape .29, 37, 2. of uint32 needs 8584",
        ),
        (
            head(RAMP.shape, "uint32"),
            bitshuffle.compress_lz4(RAMP).tobytes()[:-9],
            "no 12-byte chunk header .*truncated",
        ),
        (head((5,), "uint8"), bytes(17), "block size 0 is not a positive multiple"),
        (head(RAMP.shape, "uint32"), CHUNK[:16] + b"\xff" * (len(CHUNK) - 16), "corrupt"),
        (
            head(RAMP.shape, "uint32"),
            CHUNK[:8] + struct.pack(">I", 12) + CHUNK[12:],
            "block size 12 is not a positive multiple of 8",
        ),
        (head(RAMP.shape, "uint32", "none"), RAMP.tobytes()[:-1], "blob of 4291 bytes for shape"),
        (head(RAMP.shape, "uint32", "lz4"), CHUNK, "unknown compression 'lz4'"),
        (head(RAMP.shape, "mono12p"), CHUNK, "unsupported pixel type 'mono12p'"),
        ({"htype": "image", "type": "uint32"}, CHUNK, "data: no shape"),
        (head([0, 5], "uint32"), CHUNK, "dimensions must be positive"),
        (head([2**20, 2**20], "uint8"), CHUNK, "more than"),
        (head(RAMP.shape, "uint32", channels=[]), CHUNK, "channels must be a non-empty list"),
        (
            head(RAMP.shape, "uint32", channels=[{"shape": [2], "type": "uint8"}] * 2),
            CHUNK,
            "channel names must differ",
        ),
        ({"htype": "header"}, CHUNK, "not an image message: htype 'header'"),
        ([1, 2], CHUNK, "image header must be a JSON object, got list"),
        (head(RAMP.shape, "uint32", "none"), RAMP.T, "contiguous"),
        (head(RAMP.shape, "uint32"), 12, "expected a buffer, got int"),
    ],
)
def test_bad_input_is_a_value_error_naming_it(message, blob, error):
    with pytest.raises(ValueError, match=error):
        decode_image(message, blob)


def test_tracker_reports_gaps_late_messages_and_series_bounds():
    tracker = Tracker()

    def place(htype: str, number: int | None) -> tuple:
        message = parse([json.dumps({"htype": htype, "msg_number": number}).encode(), b""])
        position = tracker.place(message)
        return position.missing, position.late, position.outside

    assert place("image", 7) == (0, False, True)  # joined mid-series: its header never seen
    assert place("series_end", 9) == (0, False, True)
    assert place("header", 0) == (0, False, False)
    assert place("image", 1) == (0, False, False)
    assert place("image", 4) == (2, False, False)  # 2 and 3 dropped for this consumer
    assert place("image", 3) == (0, True, False)  # a scale-out part forwards out of order
    assert place("series_end", 6) == (1, False, False)
    assert place("image", 1) == (0, False, True)  # the next series' header was lost
    assert tracker.missing == 3


def test_parse_never_fails():
    assert isinstance(parse([b'{"htype": "header", "msg_number": 0}', b'{"a": 1}']), HeaderMessage)
    assert parse([b'{"htype": "header", "msg_number": 0}', b"[]"]).metadata == {}
    assert isinstance(parse([b'{"htype": "series_end", "msg_number": 3}']), SeriesEndMessage)
    for parts, reason in (
        ([], "no parts"),
        ([b"\xff"], "not JSON"),
        ([b"[1]"], "JSON list"),
        ([b'{"htype": "image", "msg_number": -1}'], "msg_number -1"),
        ([b'{"htype": "dimage-1.0"}'], "unknown htype 'dimage-1.0'"),
    ):
        message = parse(parts)
        assert isinstance(message, Unreadable) and reason in message.reason, message


def test_image_message_decodes_lazily_and_once():
    message = parse([json.dumps(head(RAMP.shape, "uint32")).encode(), lying_length(CHUNK)])
    assert isinstance(message, ImageMessage) and message.nbytes == len(CHUNK)
    assert message.channels[0].shape == RAMP.shape  # the header alone
    with pytest.raises(ValueError, match="truncated"):
        _ = message.array
    good = parse([json.dumps(head(RAMP.shape, "uint32")).encode(), CHUNK])
    assert good.array is good.array and np.array_equal(good.array, RAMP)


def test_endpoint_forms():
    assert endpoint_of("9100") == "tcp://127.0.0.1:9100"
    assert endpoint_of("host:9100") == "tcp://host:9100"
    assert endpoint_of("ipc:///tmp/x") == "ipc:///tmp/x"


def test_consumer_timeout_iteration_and_close():
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    try:
        stream = Consumer(str(port), timeout_s=0.2)
        with stream:
            with pytest.raises(TimeoutError, match="within 0.05 s"):
                stream.receive(0.05)
            push.send_multipart(
                [json.dumps(head(RAMP.shape, "uint32")).encode(), CHUNK], copy=False
            )
            push.send(b'{"htype": "series_end", "msg_number": 2}')
            got = list(stream)  # ends 0.2 s after the last message
        assert stream.closed and stream.received == 2
        assert np.array_equal(got[0].array, RAMP)  # blobs outlive the socket
        assert got[0].position.outside and isinstance(got[1], SeriesEndMessage)
        stream.close()  # twice is fine
        with pytest.raises(ValueError, match="closed"):
            stream.receive()
        with pytest.raises(ValueError, match="cannot connect to 'tcp://no port'"):
            Consumer("tcp://no port")
    finally:
        push.close(linger=0)
        ctx.term()
