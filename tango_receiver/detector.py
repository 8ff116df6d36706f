"""The detector classes: one per wire format, each a child of the general case ``Detector``.

A class says which sockets to open and how their parts become internal messages (``Header``,
``Image``, ``SeriesEnd``). Decoding runs in the decoder workers, so it must be thread-safe:
every method here is a pure function of the message it is given. Socket handling is in
``transport.py``, the helpers the decoders share in ``decoding.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import zmq

from .codecs import bslz4, cbf, cbor_v2, dectris, mono12p
from .codecs.cbor_view import cbor_type
from .codecs.limits import check_shape, dtype_name
from .decoding import (
    PlaceRefusal,
    announced_images,
    bslz4_channel,
    check_raw_size,
    describe,
    internal_pixels,
    json_head,
    json_part,
    non_negative_int,
    scaler_channel,
    shape_dtype,
    single_blob,
    v1_array,
    v1_format,
    v1_pixels,
    v1_times,
    v2_metadata,
    v2_times,
    v2_user_data,
)
from .lane import AVAILABLE as LANE_BUILT
from .lane import Candidate, LaneForm, LaneSource, Wire
from .messages import Channel, Header, Image, InvalidMessage, Message, Parts, SeriesEnd
from .modules import ModuleGap, ModuleSet
from .mx import PILATUS_CBF, STREAM_V1, STREAM_V2, Table
from .receiver_config import ReceiverConfig
from .sim import eiger_v1 as sim_eiger_v1
from .sim import internal as sim_internal
from .sim import lambda_ as sim_lambda
from .sim import orca as sim_orca
from .sim import pilatus as sim_pilatus
from .sim import stream_v2 as sim_stream_v2
from .sim import xspress3 as sim_xspress3
from .transforms import ImageTransform
from .transport import BATCH_BYTES, BATCH_MESSAGES, ModuleSource, Source, Upstream, receive_hwm
from .wire_fields import channel_name

IMAGE_OPTIONS = ("rotate", "mask", "tot")  # ReceiverConfig keys that transform frames

#: a simulated series: (frames, filename, count, series number) -> the messages, in order
SeriesMaker = Callable[[Sequence[np.ndarray], str, int, int], Iterator[Parts]]


@dataclass(frozen=True)
class WireTypes:
    """The three message types of a wire form: a series' header, an image, its end."""

    header: str
    image: str
    end: str


@dataclass(frozen=True)
class Simulator:
    """Where a wire form's simulator lives: its name on the command line, and its series."""

    name: str
    series: SeriesMaker


class Detector:
    """The general case: the upstream sends the internal format as it is.

    A subclass carries everything about its wire form: how it decodes (``decode``), the message
    types it switches on and how to read a message's type without decoding it (``types``,
    ``message_type``: the splitter deals messages out by them), its default port, and its
    simulator (``simulator``). The registries are built from the subclasses themselves
    (``detector_classes``), so a new detector is one class here and nothing to edit elsewhere.
    """

    default_port: ClassVar[int] = 9999
    #: which of IMAGE_OPTIONS this class applies (config.py refuses the others)
    options: ClassVar[frozenset[str]] = frozenset()
    #: the ``pipeline`` name existing deployments give with ``class: Detector`` for this class
    pipeline: ClassVar[str | None] = None
    #: one worker must read every socket (a frame's parts come on several)
    single_worker: ClassVar[bool] = False
    #: the message types of the wire form, as ``decode`` switches on them
    types: ClassVar[WireTypes] = WireTypes(header="header", image="image", end="series_end")
    #: why the splitter cannot deal this stream out to several receivers (None: it can)
    unsplittable: ClassVar[str | None] = None
    #: ``tango-receiver simulate NAME`` and the function that makes a series of this wire form
    simulator: ClassVar[Simulator] = Simulator("internal", sim_internal.simulate)
    #: ``compress`` where the entry has no such key: what the system this replaces stored for
    #: such an entry (uncompressed frames as they came, plain h5py reads them)
    compress_default: ClassVar[bool] = False
    #: where its series metadata holds what NXmx needs (mx.py); None: plain NeXus, no MX fields
    mx_keys: ClassVar[Table | None] = None
    #: its images say when each was exposed (``Image.times``): every file gets per-frame times
    frame_times: ClassVar[bool] = False

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.name = config.name
        self.compress = self.compress_default if config.compress is None else config.compress
        #: set by the receiver while ROIs are defined: pixels made here stay on their channel,
        #: so ROI counting (engine/roi.py) need not decompress the chunk made from them
        self.keep_pixels = False

    @staticmethod
    def message_type(parts: Parts) -> str | None:
        """The type of a message from its first bytes, never decoding a blob (the splitter)."""
        head = json_head(parts)
        htype = head.get("htype") if head is not None else None
        return htype if isinstance(htype, str) else None

    # --- sockets -------------------------------------------------------------------------
    def port_for(self, index: int) -> int:
        return self.default_port

    def endpoints(self) -> list[str]:
        return [
            f"tcp://{e.host}:{e.port if e.port is not None else self.port_for(i)}"
            for i, e in enumerate(self.config.upstream)
        ]

    def open(self, ctx: zmq.Context) -> Upstream:
        """Through the compiled lane (lane.py) where the class has one (``lane_wire``), it is
        built and the entry allows it; ``verify_chunks`` decompresses every chunk, which only
        Python does."""
        source = Source(ctx, self.endpoints(), receive_hwm(self.config))
        wire = self.lane_wire()
        if wire is None or not (LANE_BUILT and self.config.fast_lane) or self.config.verify_chunks:
            return source
        return LaneSource(source, wire, self.lane_form, BATCH_MESSAGES, BATCH_BYTES)

    def lane_wire(self) -> Wire | None:
        """The lane for this class's images: the internal format's where they are decoded
        exactly as here. A subclass that decodes its own (to transform frames: CBF, mono12p,
        modules put together; or to read another payload) sees every message itself."""
        return (
            "internal" if _decodes_as(self, Detector, "decode", "decode_image", "channel") else None
        )

    def lane_form(self, candidate: Candidate) -> LaneForm | None:
        """The form of the frames the lane may take for an image described as ``candidate``:
        exactly those that ``channel`` stores as they came (bitshuffle-LZ4), with the chunk
        header that ``bslz4_channel`` accepts for them."""
        shape, type_name, compression, header = candidate
        if compression != "bslz4":
            return None
        try:
            checked, dtype = shape_dtype({"shape": shape, "type": type_name})
            _, n_blocks, tail = bslz4.block_table(header, checked, dtype)
        except ValueError:  # InvalidMessage too
            return None
        return LaneForm(checked, dtype_name(dtype), n_blocks, tail)

    # --- decoding ------------------------------------------------------------------------
    def decode(self, parts: Parts) -> Message:
        head = json_part(parts, 0, "message header")
        htype = head.get("htype")
        number = non_negative_int(head, "msg_number")
        if htype == self.types.image:
            with PlaceRefusal(head, "msg_number"):
                image = self.decode_image(head, number, parts)
            image.discard = head.get("discard") is True
            return image
        if htype == self.types.header:
            meta = json_part(parts, 1, "header metadata") if len(parts) > 1 else {}
            # existing senders put save_raw in the metadata part, where the original read it
            save_raw = head.get("save_raw", meta.get("save_raw", True))
            return Header(
                msg_number=number,
                filename=head.get("filename") or "",
                save_raw=bool(save_raw),
                metadata=meta,
                series_id=head.get("series_id"),
                nimages=head.get("nimages"),
            )
        if htype == self.types.end:
            return SeriesEnd(msg_number=number)
        raise InvalidMessage(f"unknown htype {htype!r}")

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        specs = head.get("channels") or [head | {"name": "data"}]
        if not isinstance(specs, list) or len(parts) != len(specs) + 1:
            raise InvalidMessage(
                f"image {number}: {len(parts) - 1} blobs for "
                f"{len(specs) if isinstance(specs, list) else '?'} channels"
            )
        channels = [self.channel(spec, blob) for spec, blob in zip(specs, parts[1:], strict=False)]
        if len({c.name for c in channels}) < len(channels):
            raise InvalidMessage(
                f"image {number}: channel names repeat: {[c.name for c in channels]}"
            )
        image = Image(msg_number=number, frame=non_negative_int(head, "frame"), channels=channels)
        if all(c.chunk is None for c in channels):
            image.wire = parts  # forwarded exactly as it came
        return image

    def channel(self, spec: Mapping[str, Any], blob: Any) -> Channel:
        """One plane in the internal format, made ready for the writer."""
        shape, dtype = shape_dtype(spec)
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
        check_raw_size(blob, shape, dtype)
        chunk = None
        if self.compress:
            chunk = bslz4.encode_chunk(np.frombuffer(blob, dtype=dtype).reshape(shape))
        return Channel(name, shape, dtype_name(dtype), "none", blob, chunk)

    def pixels_channel(self, name: str, pixels: np.ndarray) -> Channel:
        """Pixels made here (decoded, unpacked, put together) are forwarded as they are stored:
        one bitshuffle-LZ4 chunk when ``compress`` is on, raw otherwise (see Internals.md)."""
        if self.compress:
            return Channel(
                name,
                pixels.shape,
                dtype_name(pixels.dtype),
                "bslz4",
                bslz4.encode_chunk(pixels),
                pixels=pixels if self.keep_pixels else None,
            )
        return Channel(
            name, pixels.shape, dtype_name(pixels.dtype), "none", np.ascontiguousarray(pixels)
        )


class Eiger(Detector):
    """DECTRIS stream v1 (SIMPLON 1.8): dheader / dimage / dseries_end multipart messages."""

    types = WireTypes(header="dheader-1.0", image="dimage-1.0", end="dseries_end-1.0")
    simulator = Simulator("eiger", sim_eiger_v1.simulate)
    mx_keys = STREAM_V1
    frame_times = True

    def lane_wire(self) -> Wire | None:
        return "v1" if _decodes_as(self, Eiger, "decode", "decode_v1_image") else None

    def lane_form(self, candidate: Candidate) -> LaneForm | None:
        """The form of the frames the lane may take for an image described as ``candidate``:
        exactly those that ``decode_v1_image`` stores as they came (bitshuffle-LZ4, little
        endian), with the chunk header that ``bslz4_channel`` accepts for them."""
        (x, y), type_name, encoding, header = candidate
        try:
            parsed, shape, dtype = v1_format(encoding, x, y, type_name)
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
        if htype == self.types.image:
            with PlaceRefusal(head, "frame", 1):
                return self.decode_v1_image(head, parts)
        if htype == self.types.header:
            return self.decode_v1_header(head, parts)
        if htype == self.types.end:
            return SeriesEnd(msg_number=None)
        raise InvalidMessage(f"unknown htype {htype!r}")

    def decode_v1_header(self, head: dict[str, Any], parts: Parts) -> Header:
        detail = head.get("header_detail", "none")
        expected = dectris.V1_HEADER_PARTS.get(detail)
        if expected is None or len(parts) not in (expected, expected + 1):
            raise InvalidMessage(
                f"dheader-1.0 with header_detail {detail!r} has {len(parts)} parts"
            )
        meta: dict[str, Any] = {}
        nimages = None
        aliases: dict[str, str] = {}
        if expected >= 2:
            config = json_part(parts, 1, "detector config")
            meta["config"] = config
            nimages = announced_images(config)
            aliases = {str(key): f"config/{key}" for key in config}  # .../eiger/count_time
        if expected == 8:
            for index, name in ((2, "flatfield"), (4, "pixel_mask"), (6, "countrate_table")):
                meta[name] = v1_array(json_part(parts, index, name), parts[index + 1], name)
        appendix = json_part(parts, expected, "header appendix") if len(parts) > expected else {}
        if appendix:
            meta["appendix"] = appendix
        return Header(
            msg_number=0,
            filename=appendix.get("filename") or "",
            metadata=meta,
            series_id=head.get("series"),
            nimages=nimages,
            aliases=aliases,
        )

    def decode_v1_image(self, head: dict[str, Any], parts: Parts) -> Image:
        if len(parts) < 3:
            raise InvalidMessage(f"dimage-1.0 with {len(parts)} parts, needs at least 3")
        frame = non_negative_int(head, "frame")
        desc = json_part(parts, 1, "dimage_d-1.0")
        try:
            x, y = desc["shape"]
            encoding, shape, dtype = v1_format(
                str(desc.get("encoding", "<")), x, y, str(desc.get("type"))
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidMessage(f"frame {frame}: bad dimage_d-1.0 {desc}: {exc}") from None
        blob = parts[2]
        if dectris.is_bslz4(encoding) and dtype.byteorder in "=<|":
            channel = bslz4_channel(
                "data", shape, dtype.newbyteorder("<"), blob, self.config.verify_chunks
            )
        else:
            channel = self.raw_channel(
                "data", shape, dtype.newbyteorder("<"), v1_pixels(encoding, blob, shape, dtype)
            )
        return Image(msg_number=frame + 1, frame=frame, channels=[channel], times=v1_times(parts))


class DectrisStream2(Detector):
    """DECTRIS stream v2: one CBOR message per start / image / end (Pilatus4, EIGER2)."""

    default_port = 31001
    types = WireTypes(header="start", image="image", end="end")
    simulator = Simulator("stream2", sim_stream_v2.simulate)
    mx_keys = STREAM_V2
    frame_times = True

    @staticmethod
    def message_type(parts: Parts) -> str | None:
        return cbor_type(parts[0])

    def decode(self, parts: Parts) -> Message:
        try:
            msg = cbor_v2.decode(memoryview(parts[0]))
        except ValueError as exc:
            raise InvalidMessage(f"undecodable CBOR: {exc}") from None
        if not isinstance(msg, Mapping):
            raise InvalidMessage(f"CBOR message is a {type(msg).__name__}, not a map")
        mtype = msg.get("type")
        if mtype == self.types.image:
            with PlaceRefusal(msg, "image_id", 1):
                return self.decode_v2_image(msg)
        if mtype == self.types.header:
            return self.decode_v2_start(msg)
        if mtype == self.types.end:
            return SeriesEnd(msg_number=None)
        raise InvalidMessage(f"unknown message type {mtype!r}")

    def decode_v2_start(self, msg: Mapping[str, Any]) -> Header:
        user_data, problem = v2_user_data(msg.get("user_data"))
        filename = user_data.get("filename", "") if user_data is not None else ""
        meta = {k: v2_metadata(v) for k, v in msg.items() if k != "type"}
        if user_data is not None:
            meta["user_data"] = v2_metadata(user_data)  # beamline keys as a group, not a string
        thresholds = meta.get("threshold_energy")
        # the system this replaces wrote each threshold's energy as a field of its own
        aliases = (
            {str(k): f"threshold_energy/{k}" for k in thresholds}
            if isinstance(thresholds, dict)
            else {}
        )
        nimages = msg.get("number_of_images")
        return Header(
            msg_number=0,
            filename=filename or "",
            metadata=meta,
            series_id=msg.get("series_id"),
            nimages=int(nimages) if isinstance(nimages, int) else None,
            no_file_reason=problem,
            aliases=aliases,
        )

    def decode_v2_image(self, msg: Mapping[str, Any]) -> Image:
        image_id = non_negative_int(msg, "image_id")
        data = msg.get("data")
        if not isinstance(data, Mapping) or not data:
            raise InvalidMessage(f"image {image_id}: no data channels")
        try:
            names = [channel_name(name) for name in data]
        except ValueError as exc:
            raise InvalidMessage(f"image {image_id}: {exc}") from None
        channels = [
            self.v2_channel(name, value) for name, value in zip(names, data.values(), strict=True)
        ]
        return Image(
            msg_number=image_id + 1, frame=image_id, channels=channels, times=v2_times(msg)
        )

    def v2_channel(self, name: str, value: Any) -> Channel:
        if not isinstance(value, cbor_v2.MultiDimArray):
            raise InvalidMessage(f"channel {name}: not a multi-dimensional array")
        try:
            shape = check_shape(value.shape)
            dtype = value.array.dtype
            payload = value.array.data
            if (
                isinstance(payload, cbor_v2.Compressed)
                and payload.algorithm == "bslz4"
                and dtype.byteorder in "=<|"
            ):
                return bslz4_channel(
                    name, shape, dtype.newbyteorder("<"), payload.data, self.config.verify_chunks
                )
            pixels = cbor_v2.to_numpy(value)
        except ValueError as exc:
            raise InvalidMessage(f"channel {name}: {exc}") from None
        native = np.ascontiguousarray(pixels, dtype=dtype.newbyteorder("<"))
        return self.raw_channel(name, shape, native.dtype, native)


class Pilatus(Detector):
    """DECTRIS Pilatus: every image is a whole CBF file, decoded here (fabio, without the GIL),
    transformed (transforms.py: tot, rotate, mask) and stored bitshuffle-LZ4."""

    options = frozenset(IMAGE_OPTIONS)
    pipeline = "PilatusPipeline"
    compress_default = True  # the PilatusPipeline compressed unless told not to
    simulator = Simulator("pilatus", sim_pilatus.simulate)
    mx_keys = PILATUS_CBF

    def __init__(self, config: ReceiverConfig) -> None:
        super().__init__(config)
        self.transform = ImageTransform.from_options(config.tot, config.rotate, config.mask)

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        frame = non_negative_int(head, "frame")
        if head.get("compression") != "cbf" or head.get("type", "int32") != "int32":
            raise InvalidMessage(
                f"frame {frame}: {head.get('type')!r} {head.get('compression')!r}"
                f' image; a Pilatus sends "int32" "cbf" (a CBF file)'
            )
        blob = single_blob(parts, frame)
        try:
            pixels = cbf.decode_cbf(blob)
            if list(pixels.shape) != head.get("shape"):
                raise ValueError(
                    f"CBF holds {pixels.shape[0]} x {pixels.shape[1]} pixels, the "
                    f"header says shape {head.get('shape')!r}"
                )
            image = self.transform.apply(pixels)
        except ValueError as exc:
            raise InvalidMessage(f"frame {frame}: {exc}") from None
        return Image(
            msg_number=number,
            frame=frame,
            channels=[self.pixels_channel("data", image)],
            describe=partial(self.series_metadata, cbf.mini_header_text(blob)),
        )

    def series_metadata(self, mini_header: str) -> dict[str, Any]:
        """What a frame's CBF mini-header says about the series (NXmx reads it, mx.py), and
        whether the frames are stored turned (then its geometry is not theirs)."""
        metadata: dict[str, Any] = {"cbf": cbf.parse_mini_header(mini_header)}
        if self.transform.rotate:
            metadata["rotated_clockwise"] = True
        return metadata


class OrcaLightning(Detector):
    """Hamamatsu ORCA-Lightning: 12-bit frames come as GenICam Mono12p (``type: "mono12p"``) and
    are unpacked here to uint16; its 16-bit modes send the internal format as it is."""

    pipeline = "OrcaPipeline"
    simulator = Simulator("orca", sim_orca.simulate)

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        if head.get("type") != "mono12p":
            return super().decode_image(head, number, parts)
        frame = non_negative_int(head, "frame")
        if head.get("compression", "none") != "none":
            raise InvalidMessage(
                f"frame {frame}: mono12p with compression "
                f"{head.get('compression')!r}; packed frames are sent as is"
            )
        blob = single_blob(parts, frame)
        try:
            pixels = mono12p.unpack(blob, head.get("shape") or ())
        except ValueError as exc:
            raise InvalidMessage(f"frame {frame}: {exc}") from None
        return Image(msg_number=number, frame=frame, channels=[self.pixels_channel("data", pixels)])


class Lambda(Detector):
    """X-Spectrum Lambda: every module streams the internal format on its own socket (one
    upstream entry per module, ports 9010, 9011, ...). One message from each module makes one
    message here; an image's modules are stored as one ``[frame, module, y, x]`` plane, and each
    module's position (``x``, ``y``, ``rotation``, ``full_shape`` from its header) as metadata.
    """

    default_port = sim_lambda.FIRST_PORT
    single_worker = True
    unsplittable = (
        "its modules stream on one socket each and one receiver must assemble every "
        "frame from all of them; split it by running one receiver per detector"
    )
    simulator = Simulator("lambda", sim_lambda.simulate)
    GEOMETRY: ClassVar[tuple[str, ...]] = ("x", "y", "rotation")

    def __init__(self, config: ReceiverConfig) -> None:
        super().__init__(config)
        self.modules = len(config.upstream)

    def port_for(self, index: int) -> int:
        return self.default_port + index

    def open(self, ctx: zmq.Context) -> ModuleSource:
        return ModuleSource(
            ctx, self.endpoints(), receive_hwm(self.config), self.config.gap_timeout_s
        )

    def decode(self, parts: ModuleSet) -> Message:
        heads = self.module_heads(parts)
        if heads[0].get("htype") == self.types.image:
            with PlaceRefusal(heads[0], "msg_number"):
                image = self.decode_modules_image(heads, parts)
            image.discard = heads[0].get("discard") is True
            return image
        message = super().decode(parts[0])
        if isinstance(message, Header):
            message.metadata = message.metadata | self.geometry(parts)
        return message

    def module_heads(self, modules: ModuleSet) -> list[dict[str, Any]]:
        """Every module's header part, once all modules are there and agree."""
        if len(modules) != self.modules or not all(
            isinstance(m, (list, ModuleGap)) for m in modules
        ):
            raise InvalidMessage(
                f"a Lambda decodes one message from each of its {self.modules} "
                f"modules, got {len(modules)} parts"
            )
        heads = {
            i: json_part(m, 0, f"module {i} message header")
            for i, m in enumerate(modules)
            if isinstance(m, list)
        }
        what = describe(next(iter(heads.values()), {}))
        gaps = [f"module {i} {m.reason}" for i, m in enumerate(modules) if isinstance(m, ModuleGap)]
        if gaps:
            raise InvalidMessage(f"{what}: {'; '.join(gaps)}")
        seen = [describe(head) for head in heads.values()]
        if len(set(seen)) > 1:
            raise InvalidMessage(
                "modules disagree: "
                + ", ".join(f"module {i} {text}" for i, text in enumerate(seen))
            )
        return list(heads.values())

    def decode_modules_image(self, heads: list[dict[str, Any]], modules: ModuleSet) -> Image:
        number, frame = (
            non_negative_int(heads[0], "msg_number"),
            non_negative_int(heads[0], "frame"),
        )
        planes = []
        for i, (head, parts) in enumerate(zip(heads, modules, strict=False)):
            try:
                planes.append(internal_pixels(self.module_spec(head), single_blob(parts, frame)))
            except InvalidMessage as exc:
                raise InvalidMessage(f"frame {frame}: module {i}: {exc}") from None
        kinds = {(p.shape, p.dtype.name) for p in planes}
        if len(kinds) > 1:
            raise InvalidMessage(f"frame {frame}: modules differ in shape or type: {sorted(kinds)}")
        return Image(
            msg_number=number, frame=frame, channels=[self.pixels_channel("data", np.stack(planes))]
        )

    def module_spec(self, head: dict[str, Any]) -> dict[str, Any]:
        """What one module's blob holds. A head with ``chunks`` is in the form of the system
        this replaces: ``shape`` is the merged frame's ``[modules, H, W]`` and ``chunks``
        ``[1, H, W]``, one module's blob being one chunk of it. Without ``chunks``, ``shape`` is
        the module's own."""
        chunks = head.get("chunks")
        if chunks is None:
            return head
        shape = head.get("shape")
        if not (
            isinstance(chunks, list)
            and isinstance(shape, list)
            and len(shape) == 3
            and chunks == [1, *shape[1:]]
            and shape[0] == self.modules
        ):
            raise InvalidMessage(
                f"shape {shape!r} with chunks {chunks!r}: expected the merged "
                f"frame [{self.modules}, H, W] in chunks [1, H, W]"
            )
        return head | {"shape": chunks[1:]}

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
        if len(shapes) > 1 or not (
            isinstance(full_shape, list)
            and len(full_shape) == 2
            and all(type(v) is int and v > 0 for v in full_shape)
        ):
            raise InvalidMessage(
                f"header: full_shape must be one [rows, cols] for every "
                f"module, got {sorted(shapes)}"
            )
        meta["full_shape"] = full_shape
        return meta


class Xspress3(Detector):
    """Quantum Detectors Xspress3: per frame, ``[channels, bins]`` spectra and per-channel
    scalers. An image is three parts: the internal image header, the spectra, and the scalers as
    a JSON object of per-channel lists (never a pickle: it comes off the network). The scalers
    are stored as datasets of their own beside the spectra."""

    simulator = Simulator("xspress3", sim_xspress3.simulate)
    #: scaler -> stored type, in the order the Xspress3 streamer lists them
    SCALERS: ClassVar[dict[str, str]] = {
        "ocr": "float64",
        "AllEvents": "uint32",
        "AllGood": "uint32",
        "ClockTicks": "uint32",
        "TotalTicks": "uint32",
        "ResetTicks": "uint32",
        "event_widths": "uint32",
        "dtc": "float64",
    }

    def decode_image(self, head: dict[str, Any], number: int, parts: Parts) -> Image:
        frame = non_negative_int(head, "frame")
        if len(parts) != 3:
            raise InvalidMessage(
                f"frame {frame}: {len(parts)} parts; an Xspress3 image is "
                f"header, spectra and scalers"
            )
        try:
            spectra = self.channel(head | {"name": "data"}, parts[1])
        except InvalidMessage as exc:
            raise InvalidMessage(f"frame {frame}: spectra: {exc}") from None
        if len(spectra.shape) != 2:
            raise InvalidMessage(
                f"frame {frame}: spectra of shape {list(spectra.shape)}, expected [channels, bins]"
            )
        scalers = json_part(parts, 2, f"frame {frame} scalers")
        channels = [
            spectra,
            *(
                scaler_channel(name, np.dtype(dtype), scalers.get(name), spectra.shape[0], frame)
                for name, dtype in self.SCALERS.items()
            ),
        ]
        return Image(msg_number=number, frame=frame, channels=channels)


def _decodes_as(detector: Detector, cls: type[Detector], *methods: str) -> bool:
    """Whether ``detector`` decodes with ``cls``'s own ``methods``: none overridden below it."""
    return all(getattr(type(detector), name) is getattr(cls, name) for name in methods)


def detector_classes() -> dict[str, type[Detector]]:
    """Every detector class by name: ``Detector`` and its subclasses, wherever they are defined
    (a class in a module of its own registers by being imported)."""
    found: dict[str, type[Detector]] = {}
    pending: list[type[Detector]] = [Detector]
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


def pipeline_classes() -> dict[str, type[Detector]]:
    """``pipeline`` names of existing deployments (beside ``class: Detector``) -> their class."""
    return {cls.pipeline: cls for cls in detector_classes().values() if cls.pipeline}


def simulators() -> dict[str, type[Detector]]:
    """Simulator name -> the class whose wire form it speaks (the first class to name it)."""
    found: dict[str, type[Detector]] = {}
    for cls in detector_classes().values():
        found.setdefault(cls.simulator.name, cls)
    return found


def detector_for(config: ReceiverConfig) -> Detector:
    """The detector of a loaded entry (config.py has checked class and pipeline)."""
    if config.pipeline is not None:
        return pipeline_classes()[config.pipeline](config)
    return detector_classes()[config.detector_class](config)
