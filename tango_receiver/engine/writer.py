"""HDF5/NeXus writer: one file per series, frames stored as they came.

Pre-compressed bitshuffle-LZ4 chunks go in with ``write_direct_chunk``: no decompression, no
recompression, no copy. Datasets grow in blocks (a resize per frame halves the write rate) and are
trimmed to the frames written at every flush and on close. Files use the default (earliest)
format: with direct chunk writes it is as fast as ``libver="latest"``, and a file left by a
crash opens with plain h5py (the newer format's consistency flags would need h5clear first).

A file is only ever created inside the configured write roots and an existing file is never
truncated: the refusal says why, and the series goes on without a file.

Disk space is reserved ahead of HDF5 (diskspace.py): a full disk stops the writing before HDF5
fails, and the file is closed holding exactly the frames written.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from ..codecs import bslz4
from ..messages import Channel, FrameRun, Header, Image
from .chunk_writer import write_chunks
from .diskspace import DiskFull, SpaceReserve
from .errors import one_line
from .nxmx import FrameTimes, Nxmx

log = logging.getLogger(__name__)

GROW_FRAMES = 1024
H5_ERRORS = (OSError, RuntimeError)  # h5py raises either for a failing HDF5 call
BITSHUFFLE_LZ4 = dict(hdf5plugin.Bitshuffle(cname="lz4"))
BITSHUFFLE_ID = str(BITSHUFFLE_LZ4["compression"])


@dataclass(frozen=True)
class _Layout:
    frame: tuple[tuple[int, ...], str]  # shape and dtype name every frame must have
    origin: tuple[int, ...]  # chunk offset within a frame (always zeros: one chunk per frame)
    compressed: bool  # stored bitshuffle-LZ4


class WriteRefused(Exception):
    """The file may not be written (outside the roots, exists with other data, ...)."""


class WriteFailed(Exception):
    """Writing broke mid-series (disk full, I/O error); frames before it are kept."""


class FrameMismatch(ValueError):
    """A frame whose shape or type differs from the series' dataset."""


def part_filename(filename: str, suffix: str) -> str:
    """The file a receiver with ``file_suffix`` writes: the suffix goes before the extension,
    ``/data/scan_001.h5`` + ``_part0`` -> ``/data/scan_001_part0.h5``, so the parts of a series
    sort together beside where the master goes."""
    if not suffix:
        return filename
    path = Path(filename)
    return str(path.with_name(f"{path.stem}{suffix}{path.suffix}"))


def resolve_target(filename: str, roots: list[Path]) -> Path:
    """The real path to write, or WriteRefused naming the reason."""
    path = Path(filename)
    if not path.is_absolute():
        raise WriteRefused(f"{filename}: not an absolute path")
    if ".." in path.parts:
        raise WriteRefused(f"{filename}: '..' is not allowed in a data path")
    real = Path(os.path.realpath(path))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            return real
    raise WriteRefused(f"{filename}: outside the write roots ({', '.join(str(r) for r in roots)})")


class SeriesWriter:
    """Writes one series into one file; created at the header, datasets at the first frame."""

    def __init__(
        self,
        header: Header,
        dset_name: str,
        roots: list[Path],
        flush_interval_s: float,
        file_suffix: str = "",
        nxmx: Nxmx | None = None,
    ) -> None:
        self.path = resolve_target(part_filename(header.filename, file_suffix), roots)
        self.dset_name = dset_name
        self.flush_interval_s = flush_interval_s
        self.nimages = header.nimages
        self.written = 0
        self.failed = False
        self._datasets: list[h5py.Dataset] = []
        self._layouts: list[_Layout] = []  # per dataset, so the hot path never asks HDF5
        self._capacity = 0  # frames the datasets can take before they grow
        self._start = 0  # frames already in an existing dataset we append to
        self._frame_numbers: list[int] = []
        self._seq_base = 0  # sequence_number entries of series appended to before
        self._last_flush = time.monotonic()
        self._nxmx = nxmx  # written at the first frame, when its shape is known
        self._times: FrameTimes | None = None  # where the first frame has its times
        self._metadata = header.metadata
        exists = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            exists = self.path.exists()
            self.file = h5py.File(self.path, "r+" if exists else "x")
        except OSError as exc:
            reason = _reason(exc)
            if reason.startswith("disk full") and not exists:
                self.path.unlink(missing_ok=True)  # created, but its superblock did not fit
            raise WriteRefused(f"{self.path}: cannot open for writing: {reason}") from None
        try:
            self._space = SpaceReserve(self.path, self.file.id.get_filesize)
        except OSError as exc:
            self._abandon(exists)
            raise WriteRefused(f"{self.path}: cannot open for writing: {_reason(exc)}") from None
        try:
            self._layout(header, exists)
        except (OSError, ValueError, TypeError) as exc:
            self._close_file()
            raise WriteRefused(f"{self.path}: cannot lay out the file: {exc}") from None

    # --- layout --------------------------------------------------------------------------
    def _layout(self, header: Header, exists: bool) -> None:
        f = self.file
        det_path = self.dset_name.rsplit("/", 1)[0] or "/"
        entry = f.require_group("entry")
        entry.attrs.setdefault("NX_class", "NXentry")
        f.attrs.setdefault("default", "entry")
        entry.attrs.setdefault("default", "data")
        instrument = entry.require_group("instrument")
        instrument.attrs.setdefault("NX_class", "NXinstrument")
        det = f.require_group(det_path)
        if det_path.startswith("/entry/instrument/"):
            det.attrs.setdefault("NX_class", "NXdetector")
        data = entry.require_group("data")
        data.attrs.setdefault("NX_class", "NXdata")
        data.attrs.setdefault("signal", "data")
        entry.attrs["series_complete"] = False
        if header.series_id is not None:
            entry.attrs["series_id"] = str(header.series_id)
        if header.metadata:
            meta = det.require_group("metadata")
            write_metadata(meta, header.metadata)
            owned = {self.dset_name.rsplit("/", 1)[1], "sequence_number", "metadata"}
            link_fields(det, meta, field_links(header), owned)
        self._det = det
        self._data_group = data
        self._exists = exists

    def _dataset_name(self, channel: Channel, channels: list[Channel]) -> str:
        """One channel, or the channel named "data": ``dset_name``. The other channels of an
        image that has a "data" channel are its companions, stored beside it in the detector
        group (Xspress3 scalers: ``.../xspress3/ocr``); channels of an image without one are
        peers, ``<dset_name>_<channel>`` (stream v2 thresholds)."""
        if len(channels) == 1 or channel.name == "data":
            return self.dset_name
        if any(c.name == "data" for c in channels):
            return f"{self.dset_name.rsplit('/', 1)[0]}/{channel.name}"
        return f"{self.dset_name}_{channel.name}"

    def _create(self, image: Image) -> None:
        nch = len(image.channels)
        # an announced count only ever shrinks the first block: trimming a dataset costs
        # HDF5 time in its length, so a header's 1e9 would freeze the series' close
        initial = min(self.nimages, GROW_FRAMES) if self.nimages else GROW_FRAMES
        for channel in image.channels:
            name = self._dataset_name(channel, image.channels)
            dtype = np.dtype(channel.dtype)
            unlink_field(self.file, name)  # frames take a name before a header field does
            if name in self.file:
                ds = self.file[name]
                if ds.shape[1:] != channel.shape or ds.dtype != dtype:
                    raise WriteRefused(
                        f"{self.path}: existing {name} holds {ds.shape[1:]} {ds.dtype}, "
                        f"frames are {channel.shape} {dtype}; not appending"
                    )
                self._start = ds.shape[0]
            else:
                ds = self._new_frames(name, channel, initial, "data" if nch == 1 else channel.name)
            self._datasets.append(ds)
            self._layouts.append(
                _Layout(
                    (channel.shape, channel.dtype),
                    (0,) * len(channel.shape),
                    BITSHUFFLE_ID in ds._filters,
                )
            )
            self._capacity = ds.shape[0]
        if nch > 1:
            self._det.attrs["channels"] = [c.name for c in image.channels]
            self._data_group.attrs["signal"] = image.channels[0].name
        if "sequence_number" not in self._det:
            self._det.create_dataset(
                "sequence_number", shape=(0,), maxshape=(None,), dtype="uint32", chunks=(4096,)
            )  # as existing files have it
        self._seq = self._det["sequence_number"]
        self._seq_base = self._seq.shape[0]
        self._describe(image)

    def _new_frames(self, name: str, channel: Channel, initial: int, link: str) -> h5py.Dataset:
        """The dataset of a channel's frames, room for ``initial``, shown in NXdata as ``link``
        (a ``layout: dectris`` writer puts it in a data file of its own)."""
        filters = BITSHUFFLE_LZ4 if channel.stored_bslz4 else {}
        ds = self.file.create_dataset(
            name,
            shape=(initial, *channel.shape),
            maxshape=(None, *channel.shape),
            chunks=(1, *channel.shape),
            dtype=np.dtype(channel.dtype),
            **filters,
        )
        if link not in self._data_group:
            self._data_group[link] = ds
        return ds

    def _describe(self, image: Image) -> None:
        """What the first frame says about the series (a Pilatus mini-header) joins the header's
        metadata, and the NXmx fields are written from both."""
        said = image.describe() if image.describe is not None else {}
        if said:
            write_metadata(self._det.require_group("metadata"), said)
        if self._nxmx is not None:
            self._nxmx.write(
                self._det, self._metadata | said, image.channels[0].shape, self.nimages
            )
        if image.times is not None or (self._nxmx is not None and self._nxmx.frame_times):
            self._times = FrameTimes(self._det, self._start)

    # --- frames --------------------------------------------------------------------------
    def write(self, image: Image) -> None:
        if not self._datasets:
            try:
                self._create(image)
            except WriteRefused:
                self._close_file()  # refused: the existing file is left as it was
                raise
        if len(image.channels) != len(self._datasets):
            raise FrameMismatch(
                f"frame {image.frame}: {len(image.channels)} channels, "
                f"series has {len(self._datasets)}"
            )
        index = self._start + self.written
        for layout, channel in zip(self._layouts, image.channels, strict=False):
            if layout.frame != (channel.shape, channel.dtype):
                raise FrameMismatch(
                    f"frame {image.frame}: {channel.shape} {channel.dtype}, "
                    f"series is {layout.frame[0]} {layout.frame[1]}"
                )
        try:
            self._space.ensure(sum(map(_frame_bytes, self._layouts, image.channels)), 1)
        except DiskFull as exc:
            raise WriteFailed(f"{self.path}: frame {image.frame} not written: {exc}") from None
        try:
            self._grow(index + 1)
            channels = zip(self._layouts, self._datasets, image.channels, strict=False)
            for layout, ds, channel in channels:
                ds.id.write_direct_chunk(
                    (index, *layout.origin), _stored(layout.compressed, channel)
                )
        except H5_ERRORS as exc:
            self.failed = True
            raise WriteFailed(
                f"{self.path}: writing frame {image.frame} failed: {_reason(exc)}"
            ) from None
        self.written += 1
        self._frame_numbers.append(image.frame)
        if self._times is not None:
            self._times.add(image.times)
        self.maybe_flush(time.monotonic())

    def takes(self, run: FrameRun) -> bool:
        """Whether ``write_run`` stores the run as it is: the series has one dataset, stored
        bitshuffle-LZ4, of the run's frames (the first frame of a series creates it)."""
        return (
            len(self._layouts) == 1
            and self._layouts[0].compressed
            and self._layouts[0].frame == (run.shape, run.dtype)
        )

    def write_run(self, run: FrameRun) -> None:
        """Store a fast-lane run (``takes`` said yes) with one call for all its chunks."""
        index = self._start + self.written
        try:
            self._space.ensure(run.nbytes_stored, len(run))
        except DiskFull as exc:
            raise WriteFailed(f"{self.path}: frames {run.first}.. not written: {exc}") from None
        try:
            self._grow(index + len(run))
            written, err = write_chunks(self._datasets[0], run.shape, index, run.chunks)
        except H5_ERRORS as exc:
            self.failed = True
            raise WriteFailed(
                f"{self.path}: writing frames {run.first}.. failed: {_reason(exc)}"
            ) from None
        self.written += written
        self._frame_numbers.extend(range(run.first, run.first + written))
        if self._times is not None:
            self._times.add_unknown(written)
        if written < len(run):
            self.failed = True
            cause = OSError(err, os.strerror(err)) if err else OSError("HDF5 refused the chunk")
            raise WriteFailed(
                f"{self.path}: writing frame {run.first + written} failed: {_reason(cause)}"
            )
        self.maybe_flush(time.monotonic())

    def _grow(self, frames: int) -> None:
        """Room for ``frames`` in every dataset, in blocks (a resize per frame halves the rate)."""
        if frames > self._capacity:
            self._capacity = frames - 1 + GROW_FRAMES
            for ds in self._datasets:
                ds.resize(self._capacity, axis=0)

    def maybe_flush(self, now: float) -> None:
        if now - self._last_flush >= self.flush_interval_s:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Make every frame so far readable after a crash (bounded by flush_interval_s).

        The datasets are trimmed to the frames written, so a file left by a crash holds
        exactly the flushed frames; the next frame grows them again (one resize per flush).
        """
        try:
            self._write_sequence()
            self._trim()
            self.file["entry"].attrs["frames_written"] = self.written
            self.file.flush()
        except H5_ERRORS as exc:
            self.failed = True
            raise WriteFailed(f"{self.path}: flush failed: {_reason(exc)}") from None
        self._last_flush = time.monotonic() if now is None else now

    def _write_sequence(self) -> None:
        if not self._datasets:
            return
        start = self._seq.shape[0]
        pending = self._frame_numbers[start - self._seq_base :]
        if pending:
            self._seq.resize(start + len(pending), axis=0)
            self._seq[start:] = pending
        if self._times is not None:
            self._times.write()

    def _trim(self) -> None:
        if self._capacity > self._start + self.written:
            self._capacity = self._start + self.written
            for ds in self._datasets:
                ds.resize(self._capacity, axis=0)

    def close(self, complete: bool) -> None:
        """Trim to the frames written and mark whether the series arrived whole."""
        if not self.file:
            return  # refused at its first frame and closed then
        try:
            if not self.failed:  # after a failed write HDF5's own state is not to be trusted
                self._write_sequence()
                self._trim()
                self.file["entry"].attrs["series_complete"] = complete
                self.file["entry"].attrs["frames_written"] = self.written
        except H5_ERRORS as exc:
            raise WriteFailed(f"{self.path}: closing failed: {_reason(exc)}") from None
        finally:
            try:
                self._close_file()
            except H5_ERRORS as exc:  # what was flushed before stays readable
                log.error("%s: close failed: %s", self.path, _reason(exc))

    def _abandon(self, existed: bool) -> None:
        """Give up a file before anything was written to it: a new one is removed (at a full
        disk its close cannot even write the superblock), an existing one left as it was."""
        try:
            self.file.close()
        except H5_ERRORS:
            pass  # a new file is removed below, an existing one was not changed
        if not existed:
            self.path.unlink(missing_ok=True)

    def _close_file(self) -> None:
        try:
            self.file.close()
        finally:
            self._space.release()


def _frame_bytes(layout: _Layout, channel: Channel) -> int:
    """At most what storing ``channel`` adds to the file: the chunk as it is, or the frame
    made raw or compressed on the way (bitshuffle-LZ4 of noise is a little over raw)."""
    if layout.compressed == (channel.chunk is not None or channel.compression == "bslz4"):
        return memoryview(channel.stored).nbytes
    raw = math.prod(channel.shape) * np.dtype(channel.dtype).itemsize
    return raw + raw // 64 + 64


def _stored(compressed: bool, channel: Channel) -> Any:
    """The bytes for a chunk of a dataset that is stored ``compressed`` or raw."""
    stored = channel.stored
    if channel.stored_bslz4 == compressed:
        return stored
    if channel.stored_bslz4:  # rare: a compressed frame into a raw dataset
        return bslz4.decode_chunk(stored, channel.shape, np.dtype(channel.dtype))
    return bslz4.encode_chunk(np.frombuffer(stored, np.dtype(channel.dtype)).reshape(channel.shape))


def field_links(header: Header) -> dict[str, str]:
    """Detector-group name -> path under ``metadata/``: every top-level field under its own
    name, then the decoder's aliases (stream v1 ``config/count_time`` as ``count_time``)."""
    links = {_h5_name(key): _h5_name(key) for key in header.metadata}
    for name, target in header.aliases.items():
        links.setdefault(_h5_name(name), "/".join(map(_h5_name, target.split("/"))))
    return links


def link_fields(det: h5py.Group, meta: h5py.Group, links: dict[str, str], owned: set[str]) -> None:
    """The header's fields in the detector group itself, where the system this replaces wrote
    them (``.../zyla/top_level/nest``, ``.../eiger/count_time``) and existing readers open
    them: soft links to the ``metadata/`` copy, so nothing is stored twice. Names the receiver
    owns (the frames, ``sequence_number``, ``metadata``) and names already there (a field an
    earlier series of the file recorded) are left alone; the field stays in ``metadata/``."""
    for name, target in links.items():
        if name not in owned and name not in det and target in meta:
            det[name] = h5py.SoftLink(f"{meta.name}/{target}")


def unlink_field(file: h5py.File, name: str) -> None:
    """Remove a header field's link where a frame dataset is to be created (a channel named
    like a field: the frames win, the field stays in ``metadata/``)."""
    link = file.get(name, getlink=True)
    if isinstance(link, h5py.SoftLink) and "/metadata/" in link.path:
        del file[name]


def _h5_name(key: Any) -> str:
    return str(key).replace("/", "_") or "_"


def write_metadata(group: h5py.Group, meta: dict[str, Any]) -> None:
    """Nested dicts become groups; scalars, strings and arrays become datasets."""
    for key, value in meta.items():
        name = _h5_name(key)
        if name in group:
            continue  # appending to an existing file: keep what the first series recorded
        if isinstance(value, dict):
            write_metadata(group.require_group(name), value)
        elif value is None:
            continue
        elif isinstance(value, str):
            group.create_dataset(name, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, (bool, int, float, np.ndarray, np.generic)):
            group.create_dataset(name, data=value)
        elif isinstance(value, (list, tuple)):
            arr = np.asarray(value)
            if arr.dtype.kind in "biuf":
                group.create_dataset(name, data=arr)
            else:
                group.create_dataset(
                    name, data=json.dumps(value, default=str), dtype=h5py.string_dtype()
                )
        else:
            group.create_dataset(name, data=str(value), dtype=h5py.string_dtype())


def _reason(exc: Exception) -> str:
    """HDF5 wraps the system error in its own text: find the cause an operator acts on."""
    text = one_line(str(exc))
    if (
        getattr(exc, "errno", None) == errno.ENOSPC
        or "No space left" in text
        or f"errno = {errno.ENOSPC}" in text
    ):
        return f"disk full ({text})"
    if (
        getattr(exc, "errno", None) == errno.EFBIG
        or "File too large" in text
        or f"errno = {errno.EFBIG}" in text
    ):
        return f"file size limit reached, as good as disk full ({text})"
    return text
