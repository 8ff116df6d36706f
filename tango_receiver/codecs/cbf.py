"""Pilatus images: one whole miniCBF file per frame, byte-offset compressed int32.

Decoding uses fabio's Cython byte-offset decoder (it releases the GIL). That decoder does not
check the end of its input: an escape sequence in the last bytes makes it read up to 6 bytes
past the buffer. So the binary section is handed over with 7 sentinel bytes of +1 deltas
appended and ``n + 7`` pixels asked for; a well-formed section decodes to exactly the ``n``
expected pixels followed by seven +1 steps, while any escape that crossed the end (its high
byte then comes from the sentinel) produces a step of at least 256 and is refused.

The loop runs without the GIL, so decoder workers decode in parallel (timings:
benchmarks/LOG.md).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from fabio.cbfimage import PilatusHeader
from fabio.compression import compByteOffset
from fabio.ext.byte_offset import dec_cbf32

from .limits import byte_view, check_shape

MARKER = b"\x0c\x1a\x04\xd5"
_SECTION = "--CIF-BINARY-FORMAT-SECTION--"
_HEADER_SCAN = 1 << 20  # Pilatus headers are a few KiB; never search megabytes of pixels
_FIELD = re.compile(r"^(X-Binary-[\w-]+):[ \t]*([^\r\n]*?)[ \t\r]*$", re.MULTILINE)
_CONVERSIONS = re.compile(r'conversions[ \t]*=[ \t]*"?([\w-]+)')
_INT32 = "signed 32-bit integer"
_SENTINEL = b"\x01" * 7
_PADDING = 4095  # what a Pilatus writes after the binary data
_MINI_HEADER_SCAN = 1 << 16  # the mini-header comes first and is a few KiB
_CONTENTS = re.compile(r"_array_data\.header_contents[ \t]*\r?\n;(.*?)\r?\n;", re.DOTALL)
_TIMESTAMP = re.compile(r"^#[ \t]*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)", re.MULTILINE)
_SERIAL = re.compile(r"S/N[ \t]+([\w.-]+)")


def decode_cbf(blob: Any) -> np.ndarray:
    """Decode a CBF file (any buffer) to an int32 array of shape (rows, cols)."""
    view = byte_view(blob)
    head = view[:_HEADER_SCAN].tobytes()
    marker = head.find(MARKER)
    if marker < 0:
        raise ValueError(f"no CBF binary marker (0C 1A 04 D5) in the first {len(head)} bytes")
    size, dims = _parse_header(head[:marker].decode("latin-1"))
    n_pixels = math.prod(dims)
    start = marker + len(MARKER)
    if start + size > len(view):
        raise ValueError(
            f"CBF truncated: X-Binary-Size is {size} bytes, only "
            f"{len(view) - start} follow the marker"
        )
    if size < n_pixels:
        raise ValueError(f"CBF binary section of {size} bytes cannot hold {n_pixels} pixels")
    stream = b"".join((view[start : start + size], _SENTINEL))
    pixels = dec_cbf32(stream, n_pixels + len(_SENTINEL))
    steps = np.diff(pixels[n_pixels - 1 :])
    if len(pixels) != n_pixels + len(_SENTINEL) or np.any(steps != 1):
        raise ValueError(
            f"CBF byte-offset data does not decode to exactly {n_pixels} pixels in {size} bytes"
        )
    return pixels[:n_pixels].reshape(dims)


def mini_header_text(blob: Any) -> str:
    """The PILATUS_1.2 mini-header's lines (``# Pixel_size 172e-6 m x 172e-6 m`` ...) of a CBF
    file, as they are; empty when it has none. Cheap: found, not parsed."""
    head = byte_view(blob)[:_MINI_HEADER_SCAN].tobytes()
    marker = head.find(MARKER)
    found = _CONTENTS.search(head[: marker if marker >= 0 else len(head)].decode("latin-1"))
    return found.group(1) if found else ""


def parse_mini_header(text: str) -> dict[str, Any]:
    """The mini-header's values as fabio's ``PilatusHeader`` reads them, tuples as lists, plus
    ``timestamp`` and ``serial``. A line fabio cannot read is left out, never the frame. About
    as dear as a twentieth of decoding a 2M frame: a series reads its first frame's only."""
    parsed: dict[str, Any] = {}
    for line in text.splitlines():
        try:
            fields = PilatusHeader(line)._dict  # noqa: SLF001 - fabio keeps the parse there
        except (ValueError, IndexError):
            continue
        parsed.update({k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()})
    for key, pattern in (("timestamp", _TIMESTAMP), ("serial", _SERIAL)):
        match = pattern.search(text)
        if match:
            parsed[key] = match.group(1)
    return parsed


def encode_cbf(array: np.ndarray, header_contents: str = "") -> bytes:
    """Write a miniCBF file the way a Pilatus does (for the simulator and tests), with
    ``header_contents`` (the ``# Key value`` lines) as its PILATUS_1.2 mini-header."""
    data = np.asarray(array)
    if data.ndim != 2:
        raise ValueError(f"a CBF image is 2-D, got shape {data.shape}")
    rows, cols = check_shape(data.shape)
    if data.dtype.kind not in "iu":
        raise ValueError(f"a CBF image holds integers, got {data.dtype}")
    if data.dtype.itemsize >= 4:
        _check_int32_range(data)
    binary = compByteOffset(np.ascontiguousarray(data, dtype=np.int32))
    contents = (
        [
            '_array_data.header_convention "PILATUS_1.2"',
            "_array_data.header_contents",
            ";",
            *header_contents.splitlines(),
            ";",
            "",
        ]
        if header_contents
        else []
    )
    header = "\r\n".join(
        [
            "###CBF: VERSION 1.5",
            "",
            "data_image_1",
            "",
            *contents,
            "_array_data.data",
            ";",
            _SECTION,
            "Content-Type: application/octet-stream;",
            '     conversions="x-CBF_BYTE_OFFSET"',
            "Content-Transfer-Encoding: BINARY",
            f"X-Binary-Size: {len(binary)}",
            "X-Binary-ID: 1",
            f'X-Binary-Element-Type: "{_INT32}"',
            "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
            f"X-Binary-Number-of-Elements: {rows * cols}",
            f"X-Binary-Size-Fastest-Dimension: {cols}",
            f"X-Binary-Size-Second-Dimension: {rows}",
            f"X-Binary-Size-Padding: {_PADDING}",
            "",
            "",
        ]
    ).encode("ascii")
    trailer = f"\r\n{_SECTION}--\r\n;\r\n".encode("ascii")
    return b"".join((header, MARKER, binary, bytes(_PADDING), trailer))


def _check_int32_range(data: np.ndarray) -> None:
    """fabio's compressor writes a step of exactly 2**31 between neighbours as a 1-byte 0
    (its ``abs`` overflows), silently corrupting the image; only a frame spanning more than
    half the int32 range can have one, so the exact check runs only then."""
    info = np.iinfo(np.int32)
    low, high = int(data.min()), int(data.max())
    if low < info.min or high > info.max:
        raise ValueError("pixel values do not fit a signed 32-bit integer")
    if max(high, 0) - min(low, 0) >= 2**31:  # the first step is from 0
        steps = np.diff(data.ravel().astype(np.int64), prepend=0)
        if np.any(np.abs(steps) == 2**31):
            raise ValueError(
                "a step of exactly 2**31 between neighbouring pixels cannot be "
                "byte-offset compressed by fabio"
            )


def _parse_header(text: str) -> tuple[int, tuple[int, int]]:
    """(X-Binary-Size, (rows, cols)) from the MIME header of the first binary section."""
    section = text.rfind(_SECTION)
    if section < 0:
        raise ValueError(f"no {_SECTION} header before the CBF binary marker")
    mime = text[section:]
    fields = dict(_FIELD.findall(mime))
    conversions = _CONVERSIONS.search(mime)
    if conversions is None or conversions.group(1).lower() != "x-cbf_byte_offset":
        raise ValueError("CBF binary section is not x-CBF_BYTE_OFFSET compressed")
    element = fields.get("X-Binary-Element-Type", f'"{_INT32}"').strip('"')
    if element != _INT32:
        raise ValueError(f"CBF element type {element!r} is not {_INT32!r}")
    size = _int_field(fields, "X-Binary-Size")
    cols = _int_field(fields, "X-Binary-Size-Fastest-Dimension")
    rows = _int_field(fields, "X-Binary-Size-Second-Dimension")
    dims = check_shape((rows, cols))
    if "X-Binary-Number-of-Elements" in fields:
        count = _int_field(fields, "X-Binary-Number-of-Elements")
        if count != rows * cols:
            raise ValueError(f"CBF header says {count} elements but {rows} x {cols} pixels")
    return size, (dims[0], dims[1])


def _int_field(fields: dict[str, str], name: str) -> int:
    if name not in fields:
        raise ValueError(f"CBF header lacks {name}")
    value = fields[name]
    if not value.isdigit() or len(value) > 12:
        raise ValueError(f"CBF header {name} is not a plain non-negative integer: {value!r}")
    return int(value)
