"""Detectors: which sockets to open and how a wire format becomes internal messages.

``Detector`` is the default and the general case: the upstream already speaks the internal JSON
format (header / image / series_end), from one or several PULL endpoints. Each subclass changes
only what differs on the wire. Decoding runs in the decoder workers, so it must be thread-safe:
every method here is a pure function of the message it is given.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import zmq

from .codecs import bslz4, cbf, cbor_v2, dectris, mono12p
from .codecs.limits import check_shape, dtype_name, dtype_of
from .config import ReceiverConfig
from .lane import AVAILABLE as LANE_BUILT
from .lane import Candidate, LaneForm, LaneSource
from .messages import Channel, Header, Image, InvalidMessage, Message, SeriesEnd
from .modules import ModuleAligner, ModuleGap, ModuleSet, Position
from .transforms import ImageTransform
from .wire_fields import MAX_NUMBER, channel_name

log = logging.getLogger(__name__)

Parts = list  # the frames of one multipart ZMQ message (zmq.Frame with copy=False)

IMAGE_OPTIONS = ("rotate", "mask", "tot")  # ReceiverConfig keys that transform frames
BATCH_MESSAGES = 64  # messages a worker takes from its socket in one go ...
BATCH_BYTES = 8 << 20  # ... or this many bytes, whichever comes first
RCVHWM = 64  # messages a worker's socket buffers at most: beyond, the detector's PUSH waits
SOCKET_BYTES = 256 << 20  # what the upstream sockets of one receiver may buffer, all together
FORWARD_BYTES = 128 << 20  # what the secondary port may queue for a slow consumer


class Source:
    """The upstream sockets of one decoder worker."""

    def __init__(self, ctx: zmq.Context, endpoints: list[str], rcvhwm: int) -> None:
        self.socket = _pull(ctx, endpoints, rcvhwm)

    def receive(self, timeout_ms: int) -> list[Parts]:
        """The messages waiting now, after up to ``timeout_ms`` for the first (none: []).

        Taking what is already there in one go means one thread hand-over per batch, not per
        frame: with the GIL, hand-overs cost more than the work at small frames.
        """
        if not self.socket.poll(timeout_ms):
            return []
        return _drain(self.socket)

    def close(self) -> None:
        self.socket.close(linger=0)


class ModuleSource(Source):
    """One PULL socket per detector module; ``receive`` hands out module sets (one message per
    module, see modules.py), so one worker must own all the sockets."""

    def __init__(self, ctx: zmq.Context, endpoints: list[str], rcvhwm: int,
                 timeout_s: float) -> None:  # not Source's single socket
        self.sockets = [_pull(ctx, [endpoint], rcvhwm) for endpoint in endpoints]
        self.poller = zmq.Poller()
        for sock in self.sockets:
            self.poller.register(sock, zmq.POLLIN)
        self.aligner = ModuleAligner(len(endpoints), timeout_s)

    def receive(self, timeout_ms: int) -> list[ModuleSet]:
        for sock, _ in self.poller.poll(timeout_ms):
            module = self.sockets.index(sock)
            for parts in _drain(sock):
                self.aligner.push(module, _position(parts), parts)
        return self.aligner.pop_ready()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)


def _pull(ctx: zmq.Context, endpoints: list[str], rcvhwm: int) -> zmq.Socket:
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.LINGER, 0)
    for endpoint in endpoints:
        sock.connect(endpoint)
    return sock


def _drain(sock: zmq.Socket) -> list[Parts]:
    """What the socket holds now, up to one batch (see BATCH_MESSAGES)."""
    batch, size = [], 0
    try:
        while len(batch) < BATCH_MESSAGES and size < BATCH_BYTES:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            batch.append(parts)
            size += sum(len(p) for p in parts)
    except zmq.Again:
        pass
    return batch


def wire_nbytes(parts: Parts | ModuleSet) -> int:
    """Bytes of a message as it arrived (a module set: of all its modules' messages)."""
    if parts and isinstance(parts[0], (list, ModuleGap)):
        return sum(0 if isinstance(p, ModuleGap) else wire_nbytes(p) for p in parts)
    return sum(map(len, parts))  # zmq.Frame and bytes: len is the size in bytes


def _position(parts: Parts) -> Position | None:
    """Where a module's message stands in its stream, or None when its header part does not say."""
    try:
        head = json.loads(memoryview(parts[0]).tobytes())
    except (ValueError, UnicodeDecodeError, RecursionError):  # runs outside the decoder's guard
        return None
    number = head.get("msg_number") if isinstance(head, dict) else None
    if type(number) is not int or number < 0:
        return None
    return Position(number, head.get("htype") == "header")


class Detector:
    """The general case: the upstream sends the internal format as it is."""

    default_port: ClassVar[int] = 9999
    #: which of IMAGE_OPTIONS this class applies (detector_for refuses the others)
    options: ClassVar[frozenset[str]] = frozenset()
    #: what the upstream speaks: the splitter tells its messages apart by it (split.py)
    wire_format: ClassVar[str] = "internal"

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
        return Source(ctx, self.endpoints(), rcvhwm=self.rcvhwm())

    def rcvhwm(self) -> int:
        """Messages one socket may buffer: many small frames (they are taken in batches, and
        64 beat 4 by 40% at 38 kB frames), few big ones (memory)."""
        return min(RCVHWM, self._frames_in(SOCKET_BYTES // self.config.nworkers) or RCVHWM)

    def forward_hwm(self) -> int:
        """Messages the secondary port queues for a consumer: the entry's ``forward_hwm``, fewer
        when frames are big (256 Zyla frames would be 2.8 GB held for a slow consumer)."""
        limit = self.config.forward_hwm
        return min(limit, self._frames_in(FORWARD_BYTES) or limit)

    def _frames_in(self, nbytes: int) -> int | None:
        """How many frames (at least 2) fit in ``nbytes``, when the entry says how big they are
        (``shape``, ``dtype``: the raw size bounds what arrives and what is forwarded)."""
        if not (self.config.shape and self.config.dtype):
            return None
        frame = int(np.prod(self.config.shape)) * np.dtype(self.config.dtype).itemsize
        return max(2, nbytes // max(frame, 1))

    # --- decoding ------------------------------------------------------------------------
    def decode(self, parts: Parts) -> Message:
        head = json_part(parts, 0, "message header")
        htype = head.get("htype")
        number = _int(head, "msg_number")
        if htype == "image":
            with numbered(head, "msg_number"):
                return self.decode_image(head, number, parts)
        if htype == "header":
            meta = json_part(parts, 1, "header metadata") if len(parts) > 1 else {}
            return Header(msg_number=number, filename=head.get("filename") or "",
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
        if len({c.name for c in channels}) < len(channels):
            raise InvalidMessage(f"image {number}: channel names repeat: "
                                 f"{[c.name for c in channels]}")
        image = Image(msg_number=number, frame=_int(head, "frame"), channels=channels)
        if all(c.chunk is None for c in channels):
            image.wire = parts  # forwarded exactly as it came
        return image

    def channel(self, spec: Mapping[str, Any], blob: Any) -> Channel:
        """One plane in the internal format, made ready for the writer."""
        shape, dtype = _shape_dtype(spec)
        try:
            name = channel_name(spec.get("name", "data"))
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
        compression = spec.get("compression", "none")
        if compression == "bslz4":
            return bslz4_channel(name, shape, dtype, blob, self.config.verify_chunks)
        if compression == "none":
            return self.raw_channel(name, shape, dtype, blob)
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
        return Channel(name, shape, dtype_name(dtype), "none", blob, chunk)

    def pixels_channel(self, name: str, pixels: np.ndarray) -> Channel:
        """Pixels made here (decoded, unpacked, put together) are forwarded as they are stored:
        one bitshuffle-LZ4 chunk when ``compress`` is on, raw otherwise (see Internals.md)."""
        if self.config.compress:
            return Channel(name, pixels.shape, dtype_name(pixels.dtype), "bslz4",
                           bslz4.encode_chunk(pixels))
        return Channel(name, pixels.shape, dtype_name(pixels.dtype), "none",
                       np.ascontiguousarray(pixels))


def bslz4_channel(name: str, shape: tuple[int, ...], dtype: np.dtype, blob: Any,
                  verify: bool) -> Channel:
    """A pre-compressed chunk, written as it is: checked, decoded only with ``verify_chunks``
    (see Internals.md)."""
    try:
        bslz4.check_chunk(blob, shape, dtype, verify)
    except ValueError as exc:
        raise InvalidMessage(f"channel {name}: {exc}") from None
    return Channel(name, shape, dtype_name(dtype), "bslz4", blob)


class Eiger(Detector):
    """DECTRIS stream v1 (SIMPLON 1.8): dheader / dimage / dseries_end multipart messages."""

    default_port = 9999
    wire_format = "stream-v1"
    #: parts of a dheader-1.0 message per header_detail, not counting the optional appendix
    HEADER_PARTS: ClassVar[dict[str, int]] = {"all": 8, "basic": 2, "none": 1}

    def open(self, ctx: zmq.Context) -> Source | LaneSource:
        """Through the compiled lane (lane.py) where it is built and the entry allows it;
        ``verify_chunks`` decompresses every chunk, which only Python does."""
        source = super().open(ctx)
        if not (LANE_BUILT and self.config.fast_lane) or self.config.verify_chunks:
            return source
        return LaneSource(source, self.lane_form, BATCH_MESSAGES, BATCH_BYTES)

    def lane_form(self, candidate: Candidate) -> LaneForm | None:
        """The form of the frames the lane may take for an image described as ``candidate``:
        exactly those that ``decode_v1_image`` stores as they came (bitshuffle-LZ4, little
        endian), with the chunk header that ``bslz4_channel`` accepts for them."""
        x, y, type_name, encoding, header = candidate
        try:
            parsed, shape, dtype = _v1_format(encoding, x, y, type_name)
            if not (dectris.is_bslz4(parsed) and dtype.byteorder in "=<|"):
                return None
            dtype = dtype.newbyteorder("<")
            _, n_blocks, tail = bslz4.block_table(header, shape, dtype)
        except (ValueError, TypeError, KeyError):
            return None
        return LaneForm(shape, dtype_name(dtype), n_blocks, tail)

    def decode(self, parts: Parts) -> Message:
        head = json_part(parts, 0, "message header")
        htype = head.get("htype")
        if htype == "dimage-1.0":
            with numbered(head, "frame", 1):
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
        return Header(msg_number=0, filename=appendix.get("filename") or "", metadata=meta,
                      series_id=head.get("series"), nimages=nimages)

    def decode_v1_image(self, head: dict[str, Any], parts: Parts) -> Image:
        if len(parts) < 3:
            raise InvalidMessage(f"dimage-1.0 with {len(parts)} parts, needs at least 3")
        frame = _int(head, "frame")
        desc = json_part(parts, 1, "dimage_d-1.0")
        try:
            x, y = desc["shape"]
            encoding, shape, dtype = _v1_format(str(desc.get("encoding", "<")), x, y,
                                                str(desc.get("type")))
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidMessage(f"frame {frame}: bad dimage_d-1.0 {desc}: {exc}") from None
        blob = parts[2]
        if dectris.is_bslz4(encoding) and dtype.byteorder in "=<|":
            channel = bslz4_channel("data", shape, dtype.newbyteorder("<"), blob,
                                    self.config.verify_chunks)
        else:
            channel = self.raw_channel("data", shape, dtype.newbyteorder("<"),
                                       _v1_pixels(encoding, blob, shape, dtype))
        # parts[3], dconfig-1.0, holds the frame's timing, which the file does not keep
        return Image(msg_number=frame + 1, frame=frame, channels=[channel])


class DectrisStream2(Detector):
    """DECTRIS stream v2: one CBOR message per start / image / end (Pilatus4, EIGER2)."""

    default_port = 31001
    wire_format = "stream-v2"

    def decode(self, parts: Parts) -> Message:
        try:
            msg = cbor_v2.decode(memoryview(parts[0]))
        except ValueError as exc:
            raise InvalidMessage(f"undecodable CBOR: {exc}") from None
        if not isinstance(msg, Mapping):
            raise InvalidMessage(f"CBOR message is a {type(msg).__name__}, not a map")
        mtype = msg.get("type")
        if mtype == "image":
            with numbered(msg, "image_id", 1):
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
        return Header(msg_number=0, filename=filename or "", metadata=meta,
                      series_id=msg.get("series_id"),
                      nimages=int(nimages) if isinstance(nimages, int) else None)

    def decode_v2_image(self, msg: Mapping[str, Any]) -> Image:
        image_id = _int(msg, "image_id")
        data = msg.get("data")
        if not isinstance(data, Mapping) or not data:
            raise InvalidMessage(f"image {image_id}: no data channels")
        try:
            names = [channel_name(name) for name in data]
        except ValueError as exc:
            raise InvalidMessage(f"image {image_id}: {exc}") from None
        channels = [self.v2_channel(name, value) for name, value in zip(names, data.values())]
        return Image(msg_number=image_id + 1, frame=image_id, channels=channels)

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


class Pilatus(Detector):
    """DECTRIS Pilatus: every image is a whole CBF file, decoded here (fabio, without the GIL),
    transformed (transforms.py: tot, rotate, mask) and stored bitshuffle-LZ4."""

    options = frozenset(IMAGE_OPTIONS)

    def __init__(self, config: ReceiverConfig) -> None:
        super().__init__(config)
        try:
            self.transform = ImageTransform.from_options(config.tot, config.rotate, config.mask)
        except ValueError as exc:
            raise ValueError(f"receiver {config.name!r}: {exc}") from None

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        frame = _int(head, "frame")
        if head.get("compression") != "cbf" or head.get("type", "int32") != "int32":
            raise InvalidMessage(f"frame {frame}: {head.get('type')!r} {head.get('compression')!r}"
                                 f" image; a Pilatus sends \"int32\" \"cbf\" (a CBF file)")
        blob = _single_blob(parts, frame)
        try:
            pixels = cbf.decode_cbf(blob)
            if list(pixels.shape) != head.get("shape"):
                raise ValueError(f"CBF holds {pixels.shape[0]} x {pixels.shape[1]} pixels, the "
                                 f"header says shape {head.get('shape')!r}")
            image = self.transform.apply(pixels)
        except ValueError as exc:
            raise InvalidMessage(f"frame {frame}: {exc}") from None
        return Image(msg_number=number, frame=frame, channels=[self.pixels_channel("data", image)])


class OrcaLightning(Detector):
    """Hamamatsu ORCA-Lightning: 12-bit frames come as GenICam Mono12p (``type: "mono12p"``) and
    are unpacked here to uint16; its 16-bit modes send the internal format as it is."""

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        if head.get("type") != "mono12p":
            return super().decode_image(head, number, parts)
        frame = _int(head, "frame")
        if head.get("compression", "none") != "none":
            raise InvalidMessage(f"frame {frame}: mono12p with compression "
                                 f"{head.get('compression')!r}; packed frames are sent as is")
        blob = _single_blob(parts, frame)
        try:
            pixels = mono12p.unpack(blob, head.get("shape"))
        except ValueError as exc:
            raise InvalidMessage(f"frame {frame}: {exc}") from None
        return Image(msg_number=number, frame=frame, channels=[self.pixels_channel("data", pixels)])


class Lambda(Detector):
    """X-Spectrum Lambda: every module streams the internal format on its own socket (one
    upstream entry per module, ports 9010, 9011, ...). One message from each module makes one
    message here; an image's modules are stored as one ``[frame, module, y, x]`` plane, and each
    module's position (``x``, ``y``, ``rotation``, ``full_shape`` from its header) as metadata.
    """

    default_port = 9010
    wire_format = "modules"  # the internal format, one socket per module
    GEOMETRY: ClassVar[tuple[str, ...]] = ("x", "y", "rotation")

    def __init__(self, config: ReceiverConfig) -> None:
        super().__init__(config)
        if config.nworkers != 1:
            raise ValueError(f"receiver {config.name!r}: a Lambda takes nworkers: 1 (one worker "
                             f"reads every module so that a frame's modules meet), got "
                             f"{config.nworkers}")
        self.modules = len(config.upstream)

    def port_for(self, index: int) -> int:
        return self.default_port + index

    def open(self, ctx: zmq.Context) -> ModuleSource:
        return ModuleSource(ctx, self.endpoints(), self.rcvhwm(), self.config.gap_timeout_s)

    def decode(self, parts: ModuleSet) -> Message:
        heads = self.module_heads(parts)
        htype = heads[0].get("htype")
        if htype == "image":
            with numbered(heads[0], "msg_number"):
                return self.decode_modules_image(heads, parts)
        message = super().decode(parts[0])
        if isinstance(message, Header):
            message.metadata = message.metadata | self.geometry(parts)
        return message

    def module_heads(self, modules: ModuleSet) -> list[dict[str, Any]]:
        """Every module's header part, once all modules are there and agree."""
        if len(modules) != self.modules or \
                not all(isinstance(m, (list, ModuleGap)) for m in modules):
            raise InvalidMessage(f"a Lambda decodes one message from each of its {self.modules} "
                                 f"modules, got {len(modules)} parts")
        heads = {i: json_part(m, 0, f"module {i} message header")
                 for i, m in enumerate(modules) if isinstance(m, list)}
        what = _describe(next(iter(heads.values()), {}))
        gaps = [f"module {i} {m.reason}" for i, m in enumerate(modules) if isinstance(m, ModuleGap)]
        if gaps:
            raise InvalidMessage(f"{what}: {'; '.join(gaps)}")
        seen = [_describe(head) for head in heads.values()]
        if len(set(seen)) > 1:
            raise InvalidMessage("modules disagree: " + ", ".join(
                f"module {i} {text}" for i, text in enumerate(seen)))
        return list(heads.values())

    def decode_modules_image(self, heads: list[dict[str, Any]], modules: ModuleSet) -> Image:
        number, frame = _int(heads[0], "msg_number"), _int(heads[0], "frame")
        planes = []
        for i, (head, parts) in enumerate(zip(heads, modules)):
            try:
                planes.append(internal_pixels(head, _single_blob(parts, frame)))
            except InvalidMessage as exc:
                raise InvalidMessage(f"frame {frame}: module {i}: {exc}") from None
        kinds = {(p.shape, p.dtype.name) for p in planes}
        if len(kinds) > 1:
            raise InvalidMessage(f"frame {frame}: modules differ in shape or type: "
                                 f"{sorted(kinds)}")
        return Image(msg_number=number, frame=frame,
                     channels=[self.pixels_channel("data", np.stack(planes))])

    def geometry(self, modules: ModuleSet) -> dict[str, Any]:
        """Where each module sits: per-module ``x``, ``y``, ``rotation``, and ``full_shape``."""
        infos = [json_part(m, 1, f"module {i} header metadata") for i, m in enumerate(modules)]
        meta: dict[str, Any] = {}
        for key in self.GEOMETRY:
            values = [info.get(key) for info in infos]
            if not all(type(v) is int for v in values):
                raise InvalidMessage(f"header: {key} of the modules must be integers, got {values}")
            meta[key] = values
        shapes = {json.dumps(info.get("full_shape")) for info in infos}
        full_shape = infos[0].get("full_shape")
        if len(shapes) > 1 or not (isinstance(full_shape, list) and len(full_shape) == 2
                                   and all(type(v) is int and v > 0 for v in full_shape)):
            raise InvalidMessage(f"header: full_shape must be one [rows, cols] for every "
                                 f"module, got {sorted(shapes)}")
        meta["full_shape"] = full_shape
        return meta


class Xspress3(Detector):
    """Quantum Detectors Xspress3: per frame, ``[channels, bins]`` spectra and per-channel
    scalers. An image is three parts: the internal image header, the spectra, and the scalers as
    a JSON object of per-channel lists (never a pickle: it comes off the network). The scalers
    are stored as datasets of their own beside the spectra."""

    #: scaler -> stored type, in the order the Xspress3 streamer lists them
    SCALERS: ClassVar[dict[str, str]] = {
        "ocr": "float64", "AllEvents": "uint32", "AllGood": "uint32", "ClockTicks": "uint32",
        "TotalTicks": "uint32", "ResetTicks": "uint32", "event_widths": "uint32",
        "dtc": "float64",
    }

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        frame = _int(head, "frame")
        if len(parts) != 3:
            raise InvalidMessage(f"frame {frame}: {len(parts)} parts; an Xspress3 image is "
                                 f"header, spectra and scalers")
        try:
            spectra = self.channel(head | {"name": "data"}, parts[1])
        except InvalidMessage as exc:
            raise InvalidMessage(f"frame {frame}: spectra: {exc}") from None
        if len(spectra.shape) != 2:
            raise InvalidMessage(f"frame {frame}: spectra of shape {list(spectra.shape)}, "
                                 f"expected [channels, bins]")
        scalers = json_part(parts, 2, f"frame {frame} scalers")
        channels = [spectra, *(scaler_channel(name, np.dtype(dtype), scalers.get(name),
                                              spectra.shape[0], frame)
                               for name, dtype in self.SCALERS.items())]
        return Image(msg_number=number, frame=frame, channels=channels)


DETECTOR_CLASSES: dict[str, type[Detector]] = {
    cls.__name__: cls for cls in (Detector, Eiger, DectrisStream2, Pilatus, OrcaLightning, Lambda,
                                  Xspress3)
}
#: ``pipeline`` names of existing deployments (beside ``class: Detector``): the class that does it
PIPELINES: dict[str, type[Detector]] = {"PilatusPipeline": Pilatus, "OrcaPipeline": OrcaLightning}


def detector_for(config: ReceiverConfig) -> Detector:
    try:
        cls = DETECTOR_CLASSES[config.detector_class]
    except KeyError:
        raise ValueError(f"receiver {config.name!r}: unknown detector class "
                         f"{config.detector_class!r}; known: {', '.join(DETECTOR_CLASSES)}") from None
    if config.pipeline is not None:
        piped = PIPELINES.get(config.pipeline)
        if piped is None:
            raise ValueError(f"receiver {config.name!r}: unknown pipeline {config.pipeline!r}; "
                             f"known: {', '.join(PIPELINES)}")
        if cls not in (Detector, piped):
            raise ValueError(f"receiver {config.name!r}: pipeline {config.pipeline} is class "
                             f"{piped.__name__}; it cannot run in class {cls.__name__}")
        cls = piped
    unused = [key for key in IMAGE_OPTIONS if getattr(config, key) and key not in cls.options]
    if unused:
        raise ValueError(f"receiver {config.name!r}: {', '.join(unused)} would be ignored by "
                         f"class {cls.__name__}; only Pilatus (pipeline PilatusPipeline) "
                         f"applies it")
    return cls(config)


# --- helpers shared by the decoders ---------------------------------------------------------
def internal_pixels(spec: Mapping[str, Any], blob: Any) -> np.ndarray:
    """One internal-format plane as pixels, whatever its compression."""
    shape, dtype = _shape_dtype(spec)
    compression = spec.get("compression", "none")
    if compression == "bslz4":
        try:
            return bslz4.decode_chunk(blob, shape, dtype)
        except ValueError as exc:
            raise InvalidMessage(str(exc)) from None
    if compression != "none":
        raise InvalidMessage(f"unknown compression {compression!r}")
    size, expected = memoryview(blob).nbytes, int(np.prod(shape)) * dtype.itemsize
    if size != expected:
        raise InvalidMessage(f"blob of {size} bytes for shape {list(shape)} {dtype.name} "
                             f"({expected} bytes)")
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def scaler_channel(name: str, dtype: np.dtype, values: Any, count: int, frame: int) -> Channel:
    """One number per detector channel, checked against the type it is stored as."""
    numbers = isinstance(values, list) and len(values) == count and all(
        type(v) is int or (type(v) is float and dtype.kind == "f") for v in values)
    if numbers and dtype.kind == "u":
        numbers = all(0 <= v <= np.iinfo(dtype).max for v in values)
    if not numbers:
        raise InvalidMessage(f"frame {frame}: scaler {name!r} must be {count} {dtype.name} "
                             f"values, one per channel, got {values!r:.80}")
    return Channel(name, (count,), dtype.name, "none", np.array(values, dtype=dtype))


def _single_blob(parts: Parts, frame: int) -> Any:
    if len(parts) != 2:
        raise InvalidMessage(f"frame {frame}: {len(parts)} parts, expected a header and one blob")
    return parts[1]


def _describe(head: Mapping[str, Any]) -> str:
    """A message as errors name it: ``image 4 (frame 3)``."""
    text = f"{head.get('htype')} {head.get('msg_number')}"
    return f"{text} (frame {head.get('frame')})" if head.get("htype") == "image" else text


@functools.lru_cache(maxsize=64, typed=True)
def _v1_format(encoding: str, x: Any, y: Any, type_name: str,
               ) -> tuple[dectris.Encoding, tuple[int, ...], np.dtype]:
    """A stream v1 frame description, the same for every frame of a series: parsed once."""
    parsed = dectris.parse_encoding(encoding)
    shape = check_shape((int(y), int(x)))  # DECTRIS gives [x, y]
    return parsed, shape, dtype_of(type_name, parsed.byteorder)


class numbered:  # noqa: N801 - used as ``with numbered(...)``, like a function
    """An image refused in the block is told by its place in the stream (``head[key] +
    offset``) when its head gives one, so that ordering does not count it missing as well.
    (A class: contextlib's generator form costs 1 us a frame, this 0.3.)"""

    __slots__ = ("head", "key", "offset")

    def __init__(self, head: Mapping[str, Any], key: str, offset: int = 0) -> None:
        self.head, self.key, self.offset = head, key, offset

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, trace: Any) -> bool:
        if isinstance(exc, InvalidMessage):
            value = self.head.get(self.key)
            if type(value) is int and value >= 0:
                exc.msg_number = value + self.offset
        return False


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


def _int(head: Mapping[str, Any], key: str) -> int:
    value = head.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NUMBER:
        raise InvalidMessage(f"{key} must be an integer in 0..2**63-1, got {value!r:.40}")
    return value


def _shape_dtype(spec: Mapping[str, Any]) -> tuple[tuple[int, ...], np.dtype]:
    try:
        return check_shape(tuple(spec["shape"])), dtype_of(str(spec.get("type")))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidMessage(f"bad shape/type in {dict(spec)}: {exc}") from None


def _announced_images(config: Mapping[str, Any]) -> int | None:
    try:
        return int(config["nimages"]) * int(config.get("ntrigger", 1))
    except (KeyError, TypeError, ValueError, OverflowError):
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
