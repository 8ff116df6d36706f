"""``layout: dectris``: the files the DECTRIS file writer makes, for pipelines that expect its
naming (``*_master.h5`` found by DIALS, XDS with durin/neggia, fabio, ALBULA).

``<name>_master.h5`` holds the NeXus/NXmx tree, the metadata and ``sequence_number`` as a
single file does; the frames go into ``<name>_data_000001.h5``, ``_data_000002.h5``, ... of at
most ``images_per_file`` frames each (``/entry/data/data``, with DECTRIS' ``image_nr_low`` and
``image_nr_high``), linked from the master as ``/entry/data/data_000001``, ... The links are
relative, so the files move together. Frames are stored as in a single file (direct chunk
writes of the chunks as they came); a fast-lane run never crosses a data file's end.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py

from ..messages import Channel, FrameRun, Header, Image
from .writer import (
    BITSHUFFLE_LZ4,
    H5_ERRORS,
    SeriesWriter,
    WriteFailed,
    WriteRefused,
    _reason,
    resolve_target,
)

log = logging.getLogger(__name__)

MASTER = "_master"


def master_stem(filename: str) -> str:
    """``/data/scan.h5`` and ``/data/scan_master.h5`` -> ``/data/scan``."""
    stem = str(Path(filename).with_suffix(""))
    return stem.removesuffix(MASTER)


class DectrisFilesWriter(SeriesWriter):
    """A master file and data files of ``images_per_file`` frames (module docstring).

    ``_start`` here is minus the series frame that opens the current data file, so the base
    class's frame index (``_start + written``) is the index within that file."""

    def __init__(
        self,
        header: Header,
        dset_name: str,
        roots: list[Path],
        flush_interval_s: float,
        *,
        images_per_file: int,
        **options: Any,
    ) -> None:
        self.images_per_file = images_per_file
        self._data_file: h5py.File | None = None
        self._files = 0
        self._channel: Channel | None = None
        master = master_stem(header.filename) + MASTER + ".h5"
        if resolve_target(master, roots).exists():  # never laid out again, nor appended to
            raise WriteRefused(f"{master}: exists; layout dectris writes new files only")
        super().__init__(
            replace(header, filename=master), dset_name, roots, flush_interval_s, **options
        )

    def _new_frames(self, name: str, channel: Channel, initial: int, link: str) -> h5py.Dataset:
        if link != "data":
            raise WriteRefused(
                f"{self.path}: layout dectris stores one plane a frame; this series has channels"
            )
        self._channel = channel
        try:
            return self._next_data_file(min(initial, self.images_per_file))
        except H5_ERRORS as exc:
            raise WriteRefused(
                f"{self.path}: cannot create its first data file: {_reason(exc)}"
            ) from None

    def _next_data_file(self, room: int) -> h5py.Dataset:
        """Open data file number ``_files + 1`` with room for ``room`` frames, and link it."""
        assert self._channel is not None
        number = self._files + 1
        name = f"{self.path.stem.removesuffix(MASTER)}_data_{number:06d}.h5"
        data_file = h5py.File(self.path.with_name(name), "x")
        data_file.attrs["default"] = "entry"
        entry = data_file.create_group("entry")
        entry.attrs.update({"NX_class": "NXentry", "default": "data"})
        group = entry.create_group("data")
        group.attrs.update({"NX_class": "NXdata", "signal": "data"})
        shape = self._channel.shape
        filters = BITSHUFFLE_LZ4 if self._channel.stored_bslz4 else {}
        ds = group.create_dataset(
            "data",
            shape=(room, *shape),
            maxshape=(None, *shape),
            chunks=(1, *shape),
            dtype=self._channel.dtype,
            **filters,
        )
        ds.attrs["image_nr_low"] = self.written + 1  # DECTRIS counts images from 1
        link = f"data_{number:06d}"
        self._data_group[link] = h5py.ExternalLink(name, "/entry/data/data")
        if number == 1:
            self._data_group.attrs["signal"] = link  # the default plot: the first data file
        self._data_file, self._files = data_file, number
        return ds

    def _roll(self) -> None:
        """Close a full data file and open the next one."""
        assert self._data_file is not None
        try:
            self._trim()
            self._data_file.close()
            self._start = -self.written
            self._datasets[0] = self._next_data_file(self.images_per_file)
        except H5_ERRORS as exc:
            self.failed = True
            raise WriteFailed(
                f"{self.path}: opening data file {self._files + 1} failed: {_reason(exc)}"
            ) from None
        self._capacity = self.images_per_file

    def _full(self) -> bool:
        return bool(self._datasets) and self._start + self.written >= self.images_per_file

    def write(self, image: Image) -> None:
        if self._full():
            self._roll()
        super().write(image)

    def takes(self, run: FrameRun) -> bool:
        room = (
            self.images_per_file
            if self._full()
            else self.images_per_file - self._start - self.written
        )
        return super().takes(run) and len(run) <= room

    def write_run(self, run: FrameRun) -> None:
        if self._full():
            self._roll()
        super().write_run(run)

    def _trim(self) -> None:
        super()._trim()
        if self._datasets:
            ds = self._datasets[0]
            ds.attrs["image_nr_high"] = (
                int(ds.attrs["image_nr_low"]) + self._start + self.written - 1
            )

    def flush(self, now: float | None = None) -> None:
        super().flush(now)
        if self._data_file is not None:
            try:
                self._data_file.flush()
            except H5_ERRORS as exc:
                self.failed = True
                raise WriteFailed(
                    f"{self.path}: flush of data file {self._files} failed: {_reason(exc)}"
                ) from None

    def close(self, complete: bool) -> None:
        try:
            super().close(complete)
        finally:
            if self._data_file is not None:
                try:
                    self._data_file.close()
                except H5_ERRORS as exc:
                    log.error("%s: closing data file %d failed: %s", self.path, self._files, exc)
