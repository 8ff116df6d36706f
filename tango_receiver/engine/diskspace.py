"""Disk space reserved ahead of HDF5, so that a full disk is met by us, never by HDF5.

When a write fails with ENOSPC inside HDF5, its in-memory state no longer matches the file
(a chunk half-indexed: "B-tree key not found" when the dataset is trimmed), and the close that
follows writes metadata that does not fit: a file that filled before its first flush did not
open at all ("addr overflow"), one that filled later kept a thousand rows of zeros. So the
writer reserves the file's blocks before HDF5 needs them (``fallocate`` with KEEP_SIZE: the
file's size does not change), some slack beyond for the metadata of the close. When no more
can be reserved, the writer stops before HDF5 has failed: the file is trimmed, flushed and
closed inside the reserved blocks and holds exactly the frames written.

Where the filesystem cannot reserve (no ``fallocate``), writing goes on unreserved, as before.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
#: Reserved beyond what the file holds: the close's metadata (sequence numbers, chunk index,
#: attributes), and what HDF5 allocates besides each chunk between two looks at the file size.
SLACK_BYTES = 512 << 10
PER_FRAME_BYTES = 512  # chunk index entry and the rest, counted generously
STEP_BYTES = 64 << 20  # reserved at a time where the disk has room: one call per 64 MB

_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)


@functools.cache
def _cannot_reserve(reason: str) -> None:
    """Said once per reason, not once per file."""
    log.warning(
        "cannot reserve disk space ahead of HDF5 here (%s): a full disk may cost the "
        "open file its frames since the last flush",
        reason,
    )


class DiskFull(OSError):
    """No room for the next frames: nothing of them was handed to HDF5."""


class SpaceReserve:
    """The blocks reserved for one HDF5 file that is being written."""

    def __init__(self, path: Path, file_size: Callable[[], int]) -> None:
        self._file_size = file_size  # HDF5's end of allocated space (H5Fget_filesize)
        self._fd: int | None = os.open(path, os.O_WRONLY) if _fallocate else None
        self._reserved = 0
        self._budget = -1  # bytes HDF5 may still allocate before the next look at the size
        self.ensure(0, 0)  # the close's slack, before the file holds anything

    def ensure(self, nbytes: int, frames: int) -> None:
        """Room for ``frames`` frames of ``nbytes`` bytes in all, or DiskFull."""
        need = nbytes + frames * PER_FRAME_BYTES
        if self._fd is None or need <= self._budget:
            self._budget -= need
            return
        size = self._file_size()
        target = size + SLACK_BYTES + need
        if target > self._reserved:
            if not self._reserve(target + STEP_BYTES) and not self._reserve(target):
                raise DiskFull(
                    errno.ENOSPC,
                    f"disk full: no room to reserve {need} bytes for "
                    f"the next frames ({self._reserved} reserved)",
                )
        self._budget = self._reserved - SLACK_BYTES - size - need

    def _reserve(self, upto: int) -> bool:
        """Reserve the file's blocks up to ``upto``: False when the disk has no room. Only
        what lies beyond the blocks already reserved is asked for: tmpfs looks up every page
        of the range it is given, so asking from 0 each time cost a 4M series 6% of its CPU."""
        assert _fallocate is not None and self._fd is not None  # reserving: both exist
        more = upto - self._reserved
        if _fallocate(self._fd, FALLOC_FL_KEEP_SIZE, self._reserved, more) == 0:
            self._reserved = upto
            return True
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return False
        _cannot_reserve(os.strerror(err))
        os.close(self._fd)
        self._fd = None  # this filesystem cannot: write unreserved
        return True

    def release(self) -> None:
        """Give back the reserved blocks beyond the end of the closed file."""
        if self._fd is None or _fallocate is None:
            return
        try:
            end = os.fstat(self._fd).st_size
            if self._reserved > end:
                _fallocate(
                    self._fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, end, self._reserved - end
                )
        finally:
            os.close(self._fd)
            self._fd = None
