"""What a consumer received, kept as one HDF5 file per series (``tango-receiver consume --save``).

Each file holds the decoded arrays, one ``[image, ...]`` dataset per channel (``data`` for a
single-array image; ``threshold_1``, ``ocr``, ... otherwise), ``frame`` and ``msg_number`` per
image, and the series' header and metadata as JSON attributes. Plain h5py reads it (no
compression filter): it is for checking what a consumer got, not the receiver's own file.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .messages import HeaderMessage, ImageMessage, Message, SeriesEndMessage

log = logging.getLogger(__name__)

GROW = 256  # images a dataset grows by: a resize per image would halve the rate
NUMBERS = ("frame", "msg_number")  # per-image datasets beside the channels'
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a channel name that is a plain dataset name


class SeriesFile:
    """One series' file, open while the series runs."""

    def __init__(self, path: Path, header: HeaderMessage | None) -> None:
        self.path = path
        self.file = h5py.File(path, "w-")
        self.count = 0
        self.layout: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        if header is not None:
            self.file.attrs["header"] = json.dumps(header.head)
            self.file.attrs["metadata"] = json.dumps(header.metadata)
        self.file.attrs["header_received"] = header is not None

    def append(self, image: ImageMessage) -> None:
        """Store one image's arrays; ValueError (nothing stored) when they do not decode or
        do not fit those before them."""
        arrays = image.arrays
        got = {name: (a.shape, a.dtype) for name, a in arrays.items()}
        if self.count == 0:
            bad = [name for name in got if name in NUMBERS or not NAME.fullmatch(name)]
            if bad:
                raise ValueError(f"channel names {bad} cannot be dataset names here")
            self.layout = got
            for name, (shape, dtype) in got.items():
                self._create(name, shape, dtype)
            for name in NUMBERS:
                self._create(name, (), np.dtype(np.int64))
        if got != self.layout:
            raise ValueError(
                f"arrays {_describe(got)} differ from the series' {_describe(self.layout)}"
            )
        values = {**arrays, "frame": _number(image.frame), "msg_number": _number(image.msg_number)}
        for name, value in values.items():
            dset = self.file[name]
            if dset.shape[0] <= self.count:
                dset.resize(self.count + GROW, axis=0)
            dset[self.count] = value
        self.count += 1

    def close(self) -> None:
        for dset in self.file.values():
            dset.resize(self.count, axis=0)
        self.file.close()
        log.info("saved %d images to %s", self.count, self.path)

    def _create(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.file.create_dataset(
            name,
            shape=(0, *shape),
            maxshape=(None, *shape),
            dtype=dtype,
            chunks=(1, *shape) if shape else (GROW,),
        )


class SeriesStore:
    """Opens a file at each header, closes it at the series' end; images that come without a
    header (the consumer joined mid-series) go to a file of their own."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.current: SeriesFile | None = None
        self.series = 0

    def take(self, message: Message) -> None:
        """Store what the message adds; ValueError for an image that cannot be stored."""
        if isinstance(message, HeaderMessage):
            series_id = _safe(message.series_id)
            self._open(message, series_id and f"series_{series_id}")
        elif isinstance(message, ImageMessage):
            current = self.current or self._open(None, f"joined_at_{_number(message.msg_number)}")
            current.append(message)
        elif isinstance(message, SeriesEndMessage):
            self.close()

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    def _open(self, header: HeaderMessage | None, stem: str | None) -> SeriesFile:
        """A new file, never over an existing one: ``stem`` or the count of series seen."""
        self.close()
        self.series += 1
        stem = stem or f"series_{self.series:04d}"
        path = self.directory / f"{stem}.h5"
        suffix = 1
        while path.exists():
            path = self.directory / f"{stem}_{suffix}.h5"
            suffix += 1
        self.current = SeriesFile(path, header)
        return self.current


def _safe(value: Any) -> str | None:
    """A series id as part of a file name: letters, digits, ``._-`` only."""
    if value is None or value == "":
        return None
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(value))[:64]


def _number(value: Any) -> int:
    return value if type(value) is int else -1


def _describe(arrays: dict[str, tuple[tuple[int, ...], np.dtype]]) -> str:
    return ", ".join(f"{name} {list(shape)} {dtype}" for name, (shape, dtype) in arrays.items())
