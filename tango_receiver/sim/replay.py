"""Replay of recorded detector streams (``../shared/fixtures``): ``tango-receiver replay``.

A capture is told by its content, not its name: a zip of CBOR items is a stream v1 recording,
a zip of pickled part lists a stream v2 one, a folder of ``*.cbor`` files a stream v2 message
set. Its wire form names the class that reads it, and so the port a receiver of that class
looks at by default.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from .eiger_v1 import capture_v1
from .stream_v2 import capture_v2, capture_v2_set

CBOR_SELF_DESCRIBE = b"\xd9\xd9\xf7"  # how a stream v1 recording (CBOR items) starts
PICKLE_PROTOCOL_2_UP = b"\x80"  # how a stream v2 recording (pickled lists of parts) starts


@dataclass(frozen=True)
class Capture:
    format: str  # the simulator name of its wire form (sim.formats: reading class, port)
    messages: list[list[bytes]]

    @property
    def images(self) -> int:
        """Messages between the series' first (header) and last (end)."""
        return len(self.messages) - 2


def load_capture(path: Path, filename: str = "") -> Capture:
    """The messages of a capture, ``filename`` put where a control system would put the file
    to write (empty: forwarded and shown, not saved); ValueError if it is none of the kinds
    above."""
    if path.is_dir():
        return Capture("stream2", capture_v2_set(path, filename))
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.namelist()
            with zf.open(members[0]) if members else nullcontext(io.BytesIO()) as member:
                magic = member.read(3)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path}: not a capture (a zip file or a folder of *.cbor): {exc}"
        ) from None
    if magic == CBOR_SELF_DESCRIBE:
        return Capture("eiger", capture_v1(path, filename))
    if magic.startswith(PICKLE_PROTOCOL_2_UP):
        try:
            return Capture("stream2", capture_v2(path, filename))
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{path}: refused: {exc}") from None
    raise ValueError(f"{path}: neither a stream v1 (CBOR) nor a stream v2 (pickled) capture")
