"""What the decoders share: reading JSON parts, checking numbers, shapes and blobs, and making
channels. Pure functions of the message they are given, so any decoder worker may call them.

Every refusal is an ``InvalidMessage`` whose text names the field and the value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .codecs import bslz4, cbor_v2, dectris
from .codecs.limits import check_shape, dtype_name, dtype_of
from .messages import Channel, InvalidMessage, Parts
from .wire_fields import MAX_NUMBER


def json_head(parts: Parts) -> dict[str, Any] | None:
    """The first part as a JSON object, or None when it is not one: for code that only peeks
    (the splitter, the module aligner) and leaves refusing to the decoder."""
    try:
        head = json.loads(memoryview(parts[0]).tobytes())
    except (ValueError, UnicodeDecodeError, RecursionError, IndexError):
        return None
    return head if isinstance(head, dict) else None


def bslz4_channel(
    name: str, shape: tuple[int, ...], dtype: np.dtype, blob: Any, verify: bool
) -> Channel:
    """A pre-compressed chunk, written as it is: checked, decoded only with ``verify_chunks``
    (see Internals.md)."""
    try:
        bslz4.check_chunk(blob, shape, dtype, verify)
    except ValueError as exc:
        raise InvalidMessage(f"channel {name}: {exc}") from None
    return Channel(name, shape, dtype_name(dtype), "bslz4", blob)


def internal_pixels(spec: Mapping[str, Any], blob: Any) -> np.ndarray:
    """One internal-format plane as pixels, whatever its compression."""
    shape, dtype = shape_dtype(spec)
    compression = spec.get("compression", "none")
    if compression == "bslz4":
        try:
            return bslz4.decode_chunk(blob, shape, dtype)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
    if compression != "none":
        raise InvalidMessage(f"unknown compression {compression!r}")
    check_raw_size(blob, shape, dtype)
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def check_raw_size(blob: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Uncompressed pixels must fill exactly ``shape`` x ``dtype``."""
    size, expected = memoryview(blob).nbytes, int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise InvalidMessage(
            f"blob of {size} bytes for shape {list(shape)} {dtype.name} ({expected} bytes)"
        )


def scaler_channel(name: str, dtype: np.dtype, values: Any, count: int, frame: int) -> Channel:
    """One number per detector channel, checked against the type it is stored as."""
    numbers = (
        isinstance(values, list)
        and len(values) == count
        and all(type(v) is int or (type(v) is float and dtype.kind == "f") for v in values)
    )
    if numbers and dtype.kind == "u":
        numbers = all(0 <= v <= np.iinfo(dtype).max for v in values)
    if not numbers:
        raise InvalidMessage(
            f"frame {frame}: scaler {name!r} must be {count} {dtype.name} "
            f"values, one per channel, got {values!r:.80}"
        )
    return Channel(name, (count,), dtype.name, "none", np.array(values, dtype=dtype))


def single_blob(parts: Parts, frame: int) -> Any:
    if len(parts) != 2:
        raise InvalidMessage(f"frame {frame}: {len(parts)} parts, expected a header and one blob")
    return parts[1]


def describe(head: Mapping[str, Any]) -> str:
    """A message as errors name it: ``image 4 (frame 3)``."""
    text = f"{head.get('htype')} {head.get('msg_number')}"
    return f"{text} (frame {head.get('frame')})" if head.get("htype") == "image" else text


@functools.lru_cache(maxsize=64, typed=True)
def v1_format(
    encoding: str,
    x: Any,
    y: Any,
    type_name: str,
) -> tuple[dectris.Encoding, tuple[int, ...], np.dtype]:
    """A stream v1 frame description, the same for every frame of a series: parsed once."""
    parsed = dectris.parse_encoding(encoding)
    shape = check_shape((int(y), int(x)))  # DECTRIS gives [x, y]
    return parsed, shape, dtype_of(type_name, parsed.byteorder)


class PlaceRefusal:
    """An image refused in the block is told by its place in the stream (``head[key] +
    offset``) when its head gives one, so that ordering does not count it missing as well.
    (A class, not a contextlib generator: this runs for every frame, at a third of the cost.)"""

    __slots__ = ("head", "key", "offset")

    def __init__(self, head: Mapping[str, Any], key: str, offset: int = 0) -> None:
        self.head, self.key, self.offset = head, key, offset

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, trace: Any) -> Literal[False]:
        if isinstance(exc, InvalidMessage):
            value = self.head.get(self.key)
            if type(value) is int and value >= 0:
                exc.msg_number = value + self.offset
        return False


TIME_KEYS = ("start_time", "stop_time", "real_time")  # per frame, stream v1 and v2


def json_part(parts: Parts, index: int, what: str) -> dict[str, Any]:
    """A JSON object part, read as UTF-8 text: given bytes, json.loads would first guess
    between UTF-8, -16 and -32, which no detector sends (a microsecond a part)."""
    if index >= len(parts):
        raise InvalidMessage(f"{what}: missing part {index}")
    try:
        value = json.loads(str(memoryview(parts[index]), "utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidMessage(f"{what}: JSON {type(value).__name__}, not an object")
    return value


def non_negative_int(head: Mapping[str, Any], key: str) -> int:
    value = head.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NUMBER:
        raise InvalidMessage(f"{key} must be an integer in 0..2**63-1, got {value!r:.40}")
    return value


def shape_dtype(spec: Mapping[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    try:
        return check_shape(tuple(spec["shape"])), dtype_of(str(spec.get("type")))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"bad shape/type in {dict(spec)}: {exc}") from None


def announced_images(config: Mapping[str, Any]) -> int | None:
    try:
        return int(config["nimages"]) * int(config.get("ntrigger", 1))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def v1_array(desc: dict[str, Any], blob: Any, what: str) -> np.ndarray:
    """A raw array of the dheader (flatfield, pixel mask, count-rate table)."""
    try:
        x, y = desc["shape"]
        dtype = dtype_of(str(desc.get("type")))
        shape = check_shape((int(y), int(x)))
        data = np.frombuffer(memoryview(blob), dtype=dtype)
        return data.reshape(shape).copy()
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"{what}: {exc}") from None


def v1_pixels(
    encoding: dectris.Encoding, blob: Any, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
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


def v2_metadata(value: Any) -> Any:
    """Stream v2 start/image fields as the file will hold them (arrays materialised)."""
    if isinstance(value, (cbor_v2.MultiDimArray, cbor_v2.TypedArray)):
        try:
            return cbor_v2.to_numpy(value)
        except ValueError:
            return None
    if isinstance(value, Mapping):
        return {str(k): v2_metadata(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v2_metadata(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # datetimes and other tagged scalars


def v2_user_data(value: Any) -> tuple[Mapping[str, Any] | None, str]:
    """A stream v2 start's ``user_data`` as a mapping, and why not where it is none.

    Senders put the beamline's JSON there as a CBOR map, a text string or a byte string (the
    senders of the system this replaces send bytes); the filename is read from it.
    """
    if value is None:
        return None, "the start message has no user_data (where the filename is given)"
    if isinstance(value, Mapping):
        return value, ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"user_data is a byte string but not UTF-8 JSON ({exc})"
    if not isinstance(value, str):
        return None, f"user_data is a {type(value).__name__}, not JSON naming a filename"
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        return None, f"user_data is not JSON ({exc}): {value!r:.80}"
    if not isinstance(parsed, dict):
        return None, f"user_data is JSON {type(parsed).__name__}, not an object with a filename"
    return parsed, ""


def v1_times(parts: Parts) -> tuple[float, float, float] | None:
    """A stream v1 frame's ``dconfig-1.0`` part (nanoseconds) in seconds; None where it is
    missing or odd: timing is kept where it can be, never a reason to refuse the frame."""
    try:
        times = json_part(parts, 3, "dconfig-1.0")
    except InvalidMessage:
        return None
    start, stop, real = (times.get(key) for key in TIME_KEYS)
    if not (type(start) is int and type(stop) is int and type(real) is int):
        return None
    return start / 1e9, stop / 1e9, real / 1e9


def v2_times(msg: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """A stream v2 image's ``[ticks, ticks per second]`` times in seconds; None where odd."""
    seconds = []
    for key in TIME_KEYS:
        value = msg.get(key)
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(type(v) is int for v in value)
            and value[1] > 0
        ):
            return None
        seconds.append(value[0] / value[1])
    return seconds[0], seconds[1], seconds[2]
