"""CBOR (RFC 8949) decoded in place: byte strings come back as memoryviews of the message.

cbor2 copies every byte string into a new ``bytes``. For a stream v2 image that byte string is
the whole compressed frame: megabytes copied per frame for nothing (benchmarks/LOG.md,
2026-11-25). Here a byte string is a slice
of the buffer it came in, so the zmq.Frame's memory goes to HDF5 and the secondary port as it
arrived. cbor2 still encodes (the simulators) and stays the reference the tests compare with.

Only what a message off the wire needs is decoded: integers, byte and text strings (also of
indefinite length), arrays, maps, tags, floats, true / false / null / undefined. Every tag goes
to the hook as it is: extensions that give tags a meaning inside the decoder (string references,
25 and 256; shared values, 28 and 29) are not resolved, and DECTRIS does not use them. Every
inconsistency (truncation, reserved heads, a map key that is not a scalar, nesting deeper than
MAX_DEPTH) is a ValueError, never an IndexError or a RecursionError.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .limits import byte_view

UINT, NINT, BYTES, TEXT, ARRAY, MAP, TAG, SIMPLE = range(8)  # the major types
ARGUMENT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}  # additional info -> bytes of argument
INDEFINITE = 31
SELF_DESCRIBE = 55799  # a marker, not a value: unwrapped
MAX_DEPTH = 64  # arrays, maps and tags inside each other; DECTRIS messages nest about 6 deep
_FLOATS = {2: struct.Struct(">e"), 4: struct.Struct(">f"), 8: struct.Struct(">d")}
_SIMPLE = {20: False, 21: True, 22: None, 23: None}
_KEY_TYPES = (str, int, float, bytes)  # scalars: what a Python dict can take as a key
_BREAK = object()  # the end of an indefinite-length item

TagHook = Callable[[int, Any], Any]


def loads(data: Any, tag_hook: TagHook) -> Any:
    """The one CBOR item that ``data`` (any buffer) holds; ``tag_hook(tag, value)`` gives what
    a tag stands for (55799 is unwrapped before it)."""
    view = byte_view(data)
    decoder = _Decoder(view, tag_hook)
    try:
        value = decoder.item(0)
    except IndexError:
        raise ValueError(f"truncated CBOR: {len(view)} bytes end inside an item") from None
    if value is _BREAK:
        raise ValueError("CBOR break code outside an indefinite-length item")
    if decoder.pos != len(view):
        raise ValueError(f"{len(view) - decoder.pos} bytes after the CBOR item")
    return value


def item_head(view: memoryview, pos: int) -> tuple[int, int | None, int]:
    """(major type, argument, position after the head); the argument is None for an
    indefinite length. A float's argument is its bits. IndexError: the view ends first."""
    initial = view[pos]
    major, info = initial >> 5, initial & 0x1F
    if info < 24:
        return major, info, pos + 1
    if info == INDEFINITE and major in (BYTES, TEXT, ARRAY, MAP, SIMPLE):
        return major, None, pos + 1
    size = ARGUMENT_BYTES.get(info)
    if size is None:
        raise ValueError(f"reserved CBOR head {initial:#04x} at byte {pos}")
    end = pos + 1 + size
    if end > len(view):
        raise IndexError(end)
    return major, int.from_bytes(view[pos + 1 : end], "big"), end


class _Decoder:
    def __init__(self, view: memoryview, tag_hook: TagHook) -> None:
        self.view = view
        self.pos = 0
        self.tag_hook = tag_hook

    def item(self, depth: int) -> Any:
        start = self.pos
        initial = self.view[start]
        arg: int | None
        if initial & 0x1F < 24:  # the argument is in the head: most items of a message
            major, arg, self.pos = initial >> 5, initial & 0x1F, start + 1
        else:
            major, arg, self.pos = item_head(self.view, start)
        if major == TEXT:
            try:
                return str(self._bytes(arg, TEXT, depth), "utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"CBOR text at byte {start} is not UTF-8: {exc}") from None
        if major == UINT:
            return arg
        if major == NINT:
            return -1 - _definite(arg, start)
        if major == BYTES:
            return self._bytes(arg, BYTES, depth)
        if major == SIMPLE:
            return self._simple(arg, self.pos - start - 1)
        if depth >= MAX_DEPTH:
            raise ValueError(f"CBOR nested deeper than {MAX_DEPTH} at byte {start}")
        if major == ARRAY:
            return self._array(arg, depth + 1)
        if major == MAP:
            return self._map(arg, depth + 1, start)
        arg = _definite(arg, start)  # a tag number (TAG)
        value = self.item(depth + 1)
        if value is _BREAK:
            raise ValueError(f"CBOR tag {arg} at byte {start} holds a break code")
        return value if arg == SELF_DESCRIBE else self.tag_hook(arg, value)

    def _bytes(self, length: int | None, major: int, depth: int) -> memoryview | bytes:
        if length is None:  # chunks of the same major type until a break: joined, so copied
            chunks: list[bytes | memoryview] = []
            while (chunk := self.item(depth)) is not _BREAK:
                if isinstance(chunk, memoryview) and major == BYTES:
                    chunks.append(chunk)
                elif isinstance(chunk, str) and major != BYTES:
                    chunks.append(chunk.encode())
                else:
                    raise ValueError(f"indefinite-length string has a {type(chunk).__name__} chunk")
            return b"".join(chunks)
        end = self.pos + length
        if end > len(self.view):
            raise IndexError(end)
        view, self.pos = self.view[self.pos : end], end
        return view

    def _array(self, count: int | None, depth: int) -> list[Any]:
        if count is None:
            values = []
            while (value := self.item(depth)) is not _BREAK:
                values.append(value)
            return values
        self._check_count(count)
        values = [self.item(depth) for _ in range(count)]
        if any(value is _BREAK for value in values):  # identity: values may define ==
            raise ValueError("CBOR break code inside a definite-length array")
        return values

    def _map(self, count: int | None, depth: int, start: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        remaining = count
        if count is not None:
            self._check_count(2 * count)
        while remaining is None or remaining > 0:
            key = self.item(depth)
            if key is _BREAK and remaining is None:
                break
            value = self.item(depth)
            if key is _BREAK or value is _BREAK:
                raise ValueError(f"CBOR map at byte {start} breaks inside an entry")
            if isinstance(key, memoryview):
                key = bytes(key)
            elif not isinstance(key, _KEY_TYPES) and key is not None:  # arrays, maps, tags
                raise ValueError(f"CBOR map at byte {start} has a {type(key).__name__} key")
            result[key] = value
            if remaining is not None:
                remaining -= 1
        return result

    def _simple(self, arg: int | None, size: int) -> Any:
        if arg is None:
            return _BREAK
        if size in _FLOATS:
            return _FLOATS[size].unpack(arg.to_bytes(size, "big"))[0]
        if arg in _SIMPLE:
            return _SIMPLE[arg]
        raise ValueError(f"unsupported CBOR simple value {arg}")

    def _check_count(self, items: int) -> None:
        """Every item takes at least one byte: a larger count is a lie, refused before a loop
        of that length starts."""
        if items > len(self.view) - self.pos:
            raise ValueError(
                f"CBOR container claims {items} items with {len(self.view) - self.pos} bytes left"
            )


SELF_DESCRIBE_PREFIX = b"\xd9\xd9\xf7"  # tag 55799, which DECTRIS puts before every message
MAX_KEYS = 8  # DECTRIS writes "type" first; a few keys more tolerate another encoder's order


def cbor_type(message: Any) -> str | None:
    """The ``type`` of a stream v2 message, read from the first entries of its CBOR map; None
    when it is not there.

    Only keys and scalar values (numbers, strings, whose length the item's head gives) are
    stepped over, at most MAX_KEYS of them; a value that is an array, a map or a tag ends the
    search, so an image's pixel data is never walked, whatever it holds: a few dozen bytes are
    read where cbor2 would decode the whole megabyte-sized message.
    """
    view = memoryview(message)
    try:
        prefix = len(SELF_DESCRIBE_PREFIX)
        pos = prefix if view[:prefix] == SELF_DESCRIBE_PREFIX else 0
        major, count, pos = item_head(view, pos)
        if major != MAP:
            return None
        for _ in range(MAX_KEYS if count is None else min(count, MAX_KEYS)):
            major, length, pos = item_head(view, pos)
            if major != TEXT or length is None:
                return None
            key, pos = view[pos : pos + length], pos + length
            major, value, pos = item_head(view, pos)
            if value is None:
                return None
            if key == b"type":
                end = pos + value
                return bytes(view[pos:end]).decode() if major == TEXT and end <= len(view) else None
            if major in (BYTES, TEXT):
                pos += value
            elif major not in (UINT, NINT, SIMPLE):
                return None
    except (IndexError, ValueError):  # truncated, or not CBOR at all
        return None
    return None


def _definite(arg: int | None, start: int) -> int:
    """The argument of an item that has no indefinite-length form (negative integers, tags)."""
    if arg is None:
        raise ValueError(f"CBOR item at byte {start} has an indefinite length")
    return arg
