"""Detectors: which sockets to open and how a wire format becomes internal messages.

``Detector`` is the default and the general case: the upstream already speaks the internal JSON
format (header / image / series_end), from one or several PULL endpoints. Each subclass changes
only what differs on the wire. Decoding runs in the decoder workers, so it must be thread-safe:
every method here is a pure function of the message it is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import zmq

from .codecs import bslz4, cbor_v2, dectris
from .codecs.limits import check_shape, dtype_of
from .config import ReceiverConfig
from .messages import Channel, Header, Image, InvalidMessage, Message, SeriesEnd

log = logging.getLogger(__name__)

Parts = list  # the frames of one multipart ZMQ message (zmq.Frame with copy=False)

BATCH_MESSAGES = 64  # messages a worker takes from its socket in one go ...
BATCH_BYTES = 8 << 20  # ... or this many bytes, whichever comes first
RCVHWM = 64  # messages a worker's socket buffers: beyond, the detector's PUSH waits


class Source:
    """The upstream sockets of one decoder worker."""

    def __init__(self, ctx: zmq.Context, endpoints: list[str], rcvhwm: int) -> None:
        self.socket = ctx.socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        for endpoint in endpoints:
            self.socket.connect(endpoint)

    def receive(self, timeout_ms: int) -> list[Parts]:
        """The messages waiting now, after up to ``timeout_ms`` for the first (none: []).

        Taking what is already there in one go means one thread hand-over per batch, not per
        frame: with the GIL, hand-overs cost more than the work at small frames.
        """
        if not self.socket.poll(timeout_ms):
            return []
        batch, size = [], 0
        try:
            while len(batch) < BATCH_MESSAGES and size < BATCH_BYTES:
                parts = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                batch.append(parts)
                size += sum(len(p) for p in parts)
        except zmq.Again:
            pass
        return batch

    def close(self) -> None:
        self.socket.close(linger=0)


class Detector:
    """The general case: the upstream sends the internal format as it is."""

    default_port: ClassVar[int] = 9999

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.name = config.name

    # --- sockets -------------------------------------------------------------------------
    def port_for(self, index: int) -> int:
        return self.default_port

    def endpoints(self) -> list[str]:
        return [f"tcp://{e.host}:{e.port if e.port is not None else self.port_for(i)}"
                for i, e in enumerate(self.config.upstream)]

    def open(self, ctx: zmq.Context) -> Source:
        return Source(ctx, self.endpoints(), rcvhwm=RCVHWM)

    # --- decoding ------------------------------------------------------------------------
    def decode(self, parts: Parts) -> Message:
        head = json_part(parts, 0, "message header")
        htype = head.get("htype")
        number = _int(head, "msg_number")
        if htype == "image":
            return self.decode_image(head, number, parts)
        if htype == "header":
            meta = json_part(parts, 1, "header metadata") if len(parts) > 1 else {}
            return Header(msg_number=number, filename=str(head.get("filename") or ""),
                          save_raw=bool(head.get("save_raw", True)), metadata=meta,
                          series_id=head.get("series_id"), nimages=head.get("nimages"))
        if htype == "series_end":
            return SeriesEnd(msg_number=number)
        raise InvalidMessage(f"unknown htype {htype!r}")

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        specs = head.get("channels") or [head | {"name": "data"}]
        if not isinstance(specs, list) or len(parts) != len(specs) + 1:
            raise InvalidMessage(f"image {number}: {len(parts) - 1} blobs for "
                                 f"{len(specs) if isinstance(specs, list) else '?'} channels")
        channels = [self.channel(spec, blob) for spec, blob in zip(specs, parts[1:])]
        image = Image(msg_number=number, frame=_int(head, "frame"), channels=channels)
        if all(c.chunk is None for c in channels):
            image.wire = parts  # forwarded exactly as it came
        return image

    def channel(self, spec: Mapping[str, Any], blob: Any) -> Channel:
        """One plane in the internal format, made ready for the writer."""
        shape, dtype = _shape_dtype(spec)
        compression = spec.get("compression", "none")
        if compression == "bslz4":
            return bslz4_channel(str(spec.get("name", "data")), shape, dtype, blob,
                                 self.config.verify_chunks)
        if compression == "none":
            return self.raw_channel(str(spec.get("name", "data")), shape, dtype, blob)
        raise InvalidMessage(f"unknown compression {compression!r}")

    def raw_channel(self, name: str, shape: tuple[int, ...], dtype: np.dtype, blob: Any) -> Channel:
        """Uncompressed pixels: checked, and compressed here in the worker when configured."""
        expected = int(np.prod(shape)) * dtype.itemsize
        size = memoryview(blob).nbytes
        if size != expected:
            raise InvalidMessage(f"blob of {size} bytes for shape {list(shape)} {dtype.name} "
                                 f"({expected} bytes)")
        chunk = None
        if self.config.compress:
            chunk = bslz4.encode_chunk(np.frombuffer(blob, dtype=dtype).reshape(shape))
        return Channel(name, shape, dtype.name, "none", blob, chunk)


def bslz4_channel(name: str, shape: tuple[int, ...], dtype: np.dtype, blob: Any,
                  walk: bool) -> Channel:
    """A pre-compressed chunk, written as it is: checked, never decoded (see Internals.md)."""
    try:
        bslz4.check_chunk(blob, shape, dtype, walk)
    except ValueError as exc:
        raise InvalidMessage(f"channel {name}: {exc}") from None
    return Channel(name, shape, dtype.name, "bslz4", blob)


class Eiger(Detector):
    """DECTRIS stream v1 (SIMPLON 1.8): dheader / dimage / dseries_end multipart messages."""

    default_port = 9999
    #: parts of a dheader-1.0 message per header_detail, not counting the optional appendix
    HEADER_PARTS: ClassVar[dict[str, int]] = {"all": 8, "basic": 2, "none": 1}

    def decode(self, parts: Parts) -> Message:
        head = json_part(parts, 0, "message header")
        htype = head.get("htype")
        if htype == "dimage-1.0":
            return self.decode_v1_image(head, parts)
        if htype == "dheader-1.0":
            return self.decode_v1_header(head, parts)
        if htype == "dseries_end-1.0":
            return SeriesEnd(msg_number=None)
        raise InvalidMessage(f"unknown htype {htype!r}")

    def decode_v1_header(self, head: dict[str, Any], parts: Parts) -> Header:
        detail = head.get("header_detail", "none")
        expected = self.HEADER_PARTS.get(detail)
        if expected is None or len(parts) not in (expected, expected + 1):
            raise InvalidMessage(f"dheader-1.0 with header_detail {detail!r} has {len(parts)} parts")
        meta: dict[str, Any] = {}
        nimages = None
        if expected >= 2:
            config = json_part(parts, 1, "detector config")
            meta["config"] = config
            nimages = _announced_images(config)
        if expected == 8:
            for index, name in ((2, "flatfield"), (4, "pixel_mask"), (6, "countrate_table")):
                meta[name] = _v1_array(json_part(parts, index, name), parts[index + 1], name)
        appendix = json_part(parts, expected, "header appendix") if len(parts) > expected else {}
        if appendix:
            meta["appendix"] = appendix
        return Header(msg_number=0, filename=str(appendix.get("filename") or ""), metadata=meta,
                      series_id=head.get("series"), nimages=nimages)

    def decode_v1_image(self, head: dict[str, Any], parts: Parts) -> Image:
        if len(parts) < 3:
            raise InvalidMessage(f"dimage-1.0 with {len(parts)} parts, needs at least 3")
        frame = _int(head, "frame")
        desc = json_part(parts, 1, "dimage_d-1.0")
        try:
            encoding = dectris.parse_encoding(str(desc.get("encoding", "<")))
            x, y = desc["shape"]
            shape = check_shape((int(y), int(x)))  # DECTRIS gives [x, y]
            dtype = dtype_of(str(desc.get("type")), encoding.byteorder)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidMessage(f"frame {frame}: bad dimage_d-1.0 {desc}: {exc}") from None
        blob = parts[2]
        if dectris.is_bslz4(encoding) and dtype.byteorder in "=<|":
            channel = bslz4_channel("data", shape, dtype.newbyteorder("<"), blob,
                                    self.config.verify_chunks)
        else:
            channel = self.raw_channel("data", shape, dtype.newbyteorder("<"),
                                       _v1_pixels(encoding, blob, shape, dtype))
        meta = json_part(parts, 3, "dconfig-1.0") if len(parts) > 3 else {}
        return Image(msg_number=frame + 1, frame=frame, channels=[channel], metadata=meta)


class DectrisStream2(Detector):
    """DECTRIS stream v2: one CBOR message per start / image / end (Pilatus4, EIGER2)."""

    default_port = 31001

    def decode(self, parts: Parts) -> Message:
        try:
            msg = cbor_v2.decode(memoryview(parts[0]))
        except ValueError as exc:
            raise InvalidMessage(f"undecodable CBOR: {exc}") from None
        if not isinstance(msg, Mapping):
            raise InvalidMessage(f"CBOR message is a {type(msg).__name__}, not a map")
        mtype = msg.get("type")
        if mtype == "image":
            return self.decode_v2_image(msg)
        if mtype == "start":
            return self.decode_v2_start(msg)
        if mtype == "end":
            return SeriesEnd(msg_number=None)
        raise InvalidMessage(f"unknown message type {mtype!r}")

    def decode_v2_start(self, msg: Mapping[str, Any]) -> Header:
        user_data = msg.get("user_data")
        if isinstance(user_data, str):
            try:
                user_data = json.loads(user_data)
            except ValueError:
                pass
        filename = user_data.get("filename", "") if isinstance(user_data, Mapping) else ""
        meta = {k: _v2_metadata(v) for k, v in msg.items() if k != "type"}
        if isinstance(user_data, Mapping):
            meta["user_data"] = _v2_metadata(user_data)  # beamline keys as a group, not a string
        nimages = msg.get("number_of_images")
        return Header(msg_number=0, filename=str(filename or ""), metadata=meta,
                      series_id=msg.get("series_id"),
                      nimages=int(nimages) if isinstance(nimages, int) else None)

    def decode_v2_image(self, msg: Mapping[str, Any]) -> Image:
        image_id = _int(msg, "image_id")
        data = msg.get("data")
        if not isinstance(data, Mapping) or not data:
            raise InvalidMessage(f"image {image_id}: no data channels")
        channels = [self.v2_channel(str(name), value) for name, value in data.items()]
        meta = {k: _v2_metadata(v) for k, v in msg.items() if k not in ("type", "data")}
        return Image(msg_number=image_id + 1, frame=image_id, channels=channels, metadata=meta)

    def v2_channel(self, name: str, value: Any) -> Channel:
        if not isinstance(value, cbor_v2.MultiDimArray):
            raise InvalidMessage(f"channel {name}: not a multi-dimensional array")
        try:
            shape = check_shape(value.shape)
            dtype = value.array.dtype
            payload = value.array.data
            if isinstance(payload, cbor_v2.Compressed) and payload.algorithm == "bslz4" \
                    and dtype.byteorder in "=<|":
                return bslz4_channel(name, shape, dtype.newbyteorder("<"), payload.data,
                                     self.config.verify_chunks)
            pixels = cbor_v2.to_numpy(value)
        except ValueError as exc:
            raise InvalidMessage(f"channel {name}: {exc}") from None
        native = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
        return self.raw_channel(name, shape, native.dtype, native)


DETECTOR_CLASSES: dict[str, type[Detector]] = {
    cls.__name__: cls for cls in (Detector, Eiger, DectrisStream2)
}


def detector_for(config: ReceiverConfig) -> Detector:
    try:
        cls = DETECTOR_CLASSES[config.detector_class]
    except KeyError:
        raise ValueError(f"receiver {config.name!r}: unknown detector class "
                         f"{config.detector_class!r}; known: {', '.join(DETECTOR_CLASSES)}") from None
    return cls(config)


# --- helpers shared by the decoders ---------------------------------------------------------
def json_part(parts: Parts, index: int, what: str) -> dict[str, Any]:
    if index >= len(parts):
        raise InvalidMessage(f"{what}: missing part {index}")
    try:
        value = json.loads(memoryview(parts[index]).tobytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidMessage(f"{what}: JSON {type(value).__name__}, not an object")
    return value


def _int(head: Mapping[str, Any], key: str) -> int:
    value = head.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidMessage(f"{key} must be a non-negative integer, got {value!r}")
    return value


def _shape_dtype(spec: Mapping[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    try:
        return check_shape(tuple(spec["shape"])), dtype_of(str(spec.get("type")))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"bad shape/type in {dict(spec)}: {exc}") from None


def _announced_images(config: Mapping[str, Any]) -> int | None:
    try:
        return int(config["nimages"]) * int(config.get("ntrigger", 1))
    except (KeyError, TypeError, ValueError):
        return None


def _v1_array(desc: dict[str, Any], blob: Any, what: str) -> np.ndarray:
    """A raw array of the dheader (flatfield, pixel mask, count-rate table)."""
    try:
        x, y = desc["shape"]
        dtype = dtype_of(str(desc.get("type")))
        shape = check_shape((int(y), int(x)))
        data = np.frombuffer(memoryview(blob), dtype=dtype)
        return data.reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"{what}: {exc}") from None


def _v1_pixels(encoding: dectris.Encoding, blob: Any, shape: tuple[int, ...],
               dtype: np.dtype) -> np.ndarray:
    """Stream v1 pixels that are not a little-endian bitshuffle-LZ4 chunk, as native array."""
    nbytes = int(np.prod(shape)) * dtype.itemsize
    try:
        if encoding.lz4 and encoding.bitshuffle_bits:
            pixels = bslz4.decode_chunk(blob, shape, dtype)
        elif encoding.lz4:
            pixels = np.frombuffer(dectris.lz4_block_decompress(blob, nbytes), dtype=dtype)
        elif encoding.bitshuffle_bits:
            pixels = dectris.bitunshuffle(blob, shape, dtype)
        else:
            pixels = np.frombuffer(memoryview(blob), dtype=dtype)
        if pixels.size != int(np.prod(shape)):
            raise ValueError(f"{pixels.size} pixels for shape {list(shape)}")
    except ValueError as exc:
        raise InvalidMessage(f"encoding {encoding}: {exc}") from None
    return np.ascontiguousarray(pixels.reshape(shape), dtype=dtype.newbyteorder("<"))


def _v2_metadata(value: Any) -> Any:
    """Stream v2 start/image fields as the file will hold them (arrays materialised)."""
    if isinstance(value, (cbor_v2.MultiDimArray, cbor_v2.TypedArray)):
        try:
            return cbor_v2.to_numpy(value)
        except ValueError:
            return None
    if isinstance(value, Mapping):
        return {str(k): _v2_metadata(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_v2_metadata(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # datetimes and other tagged scalars
