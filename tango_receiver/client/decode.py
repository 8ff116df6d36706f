"""Pixels from a secondary-port image message, for any input without crashing the process.

An image message is a JSON header part and one blob per array. The header's ``shape``,
``type`` and ``compression`` describe a single array; an image of several arrays (stream v2
thresholds, Xspress3 spectra and scalers) lists them in ``channels``, one blob each, in order.
A ``bslz4`` blob is an HDF5 bitshuffle-LZ4 chunk with its 12-byte header; bitshuffle's C
decoder trusts the chunk's block lengths and reads past the buffer on a lying one, so
``codecs.bslz4`` walks the block table before any decompression and every bad input is a
ValueError naming what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs import bslz4
from ..codecs.limits import byte_view, check_shape, dtype_of

COMPRESSIONS = ("bslz4", "none")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One array of an image, as its message describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    compression: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def channel_specs(header: Mapping[str, Any]) -> list[ChannelSpec]:
    """The arrays of an image message, in the order of its blobs: ``channels`` when the header
    lists them, else the one array the header describes (named ``data``, as the receiver does)."""
    if not isinstance(header, Mapping):
        raise ValueError(f"image header must be a JSON object, got {type(header).__name__}")
    if header.get("htype") not in (None, "image"):
        raise ValueError(f"not an image message: htype {header.get('htype')!r}")
    listed = header.get("channels")
    if listed is None:
        return [_spec({"name": "data"} | dict(header), 0)]
    if not isinstance(listed, list) or not listed:
        raise ValueError(f"channels must be a non-empty list, got {listed!r:.80}")
    specs = [_spec(item, index) for index, item in enumerate(listed)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must differ, got {names}")
    return specs


def decode_image(
    header: Mapping[str, Any], blob: Any, channel: int | str | None = None
) -> np.ndarray:
    """The array of an image message: ``decode_image(json.loads(parts[0]), parts[1])``.

    ``blob`` is bytes, a memoryview or a ``zmq.Frame`` (``recv_multipart(copy=False)``). An
    image of several arrays needs ``channel`` (an index into ``channels``, or a name) with that
    channel's blob, ``parts[1 + index]``; :func:`decode_images` decodes them all. A ``none``
    array is a view of ``blob`` (no copy), a ``bslz4`` one a new array.
    """
    specs = channel_specs(header)
    if channel is None:
        if len(specs) > 1:
            raise ValueError(
                f"image of {len(specs)} arrays ({', '.join(s.name for s in specs)}):"
                f" name one with channel=, or use decode_images(header, parts[1:])"
            )
        return decode_blob(specs[0], blob)
    return decode_blob(_pick(specs, channel), blob)


def decode_images(header: Mapping[str, Any], blobs: Sequence[Any]) -> dict[str, np.ndarray]:
    """Every array of an image message by channel name, ``blobs`` being ``parts[1:]``: a
    single-array image gives ``{"data": array}``."""
    specs = channel_specs(header)
    if len(blobs) != len(specs):
        raise ValueError(f"image of {len(specs)} arrays came with {len(blobs)} blobs")
    return {spec.name: decode_blob(spec, blob) for spec, blob in zip(specs, blobs, strict=False)}


def decode_blob(spec: ChannelSpec, blob: Any) -> np.ndarray:
    """One array from its blob, every size and length checked before numpy or bitshuffle
    read it."""
    view = byte_view(blob)
    if spec.compression == "none":
        if view.nbytes != spec.nbytes:
            raise ValueError(
                f"{spec.name}: blob of {view.nbytes} bytes for shape "
                f"{list(spec.shape)} {spec.dtype.name} ({spec.nbytes} bytes)"
            )
        return np.frombuffer(view, dtype=spec.dtype).reshape(spec.shape)
    what = f"{spec.name}: "
    if not has_chunk_header(view, spec):
        what += (
            "no 12-byte chunk header (the first 4 bytes are not zero), read as bare "
            "bitshuffle-LZ4 blocks with the default block size: "
        )
        view = memoryview(with_default_header(view, spec))
    try:
        return bslz4.decode_chunk(view, spec.shape, spec.dtype)
    except ValueError as exc:
        raise ValueError(what + str(exc)) from None


def has_chunk_header(view: memoryview, spec: ChannelSpec) -> bool:
    """Whether a bslz4 blob starts with its 12-byte chunk header, or is bitshuffle's bare
    blocks (``bitshuffle.compress_lz4``'s own output, as some older consumers stored it).

    A chunk starts with the size's 4 high bytes, zero for any array under 4 GiB (all of
    them: see ``codecs.limits``); bare blocks start with the first block's compressed length,
    never zero. An array of under 8 elements has no blocks, only its raw bytes: bare, the
    blob is exactly those."""
    if math.prod(spec.shape) < 8:
        return view.nbytes != spec.nbytes
    return view.nbytes < 4 or not any(view[:4])


def with_default_header(view: memoryview, spec: ChannelSpec) -> bytes:
    """A headerless blob as the chunk it would be with bitshuffle's default block size (the
    only one a reader can assume), so that it gets the same checks: one copy, on a path the
    receiver itself never sends."""
    block_bytes = bslz4.default_block_elements(spec.dtype.itemsize) * spec.dtype.itemsize
    return bslz4.HEADER.pack(spec.nbytes, block_bytes) + view


def _spec(item: Any, index: int) -> ChannelSpec:
    if not isinstance(item, Mapping):
        raise ValueError(f"channel {index}: must be a JSON object, got {item!r:.80}")
    name = item.get("name", "data")
    if not isinstance(name, str):
        raise ValueError(f"channel {index}: name must be a string, got {name!r:.80}")
    compression = item.get("compression", "none")  # the internal format's default
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"{name}: unknown compression {compression!r:.80}; "
            f"expected one of {', '.join(COMPRESSIONS)}"
        )
    try:
        shape = check_shape(tuple(item["shape"]))
        dtype = dtype_of(str(item["type"]))
    except KeyError as exc:
        raise ValueError(f"{name}: no {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    return ChannelSpec(name, shape, dtype, compression)


def _pick(specs: list[ChannelSpec], channel: int | str) -> ChannelSpec:
    if isinstance(channel, str):
        for spec in specs:
            if spec.name == channel:
                return spec
        raise ValueError(
            f"no channel {channel!r}; the image has {', '.join(s.name for s in specs)}"
        )
    if isinstance(channel, int) and not isinstance(channel, bool) and 0 <= channel < len(specs):
        return specs[channel]
    raise ValueError(f"no channel {channel!r}; the image has {len(specs)}")
