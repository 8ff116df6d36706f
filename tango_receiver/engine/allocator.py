"""The C allocator of a receiver's process: freed frame memory is kept for the next frame.

With glibc's defaults each frame's buffers (ZMQ message, decoded plane, compressed chunk) go back
to the kernel when freed, so the next frame's are fresh pages: a fault and a zeroed page per 4 kB.
So blocks up to the largest mmap threshold come from the arenas and stay there while a series
runs; ``give_back`` returns them at its end, and ``bound_kept`` as soon as more than ``KEEP_LIMIT``
is kept, since each thread's arena keeps its own peak. Process-wide, set by the first receiver
opened; nothing changes where the C library is not glibc 2.33 or later. Measurements:
benchmarks/LOG.md (2026-11-26).
"""

from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the largest glibc takes on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30  # free memory is returned by give_back(), not after each free
KEEP_LIMIT = 128 << 20  # free memory kept beyond this is returned by bound_kept()

_lock = threading.Lock()
_kept = False


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)
    if not all(hasattr(libc, name) for name in ("mallopt", "malloc_trim", "mallinfo2")):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc


_LIBC = _glibc()


def keep_freed_memory() -> bool:
    """Once per process; False where the C library is not glibc."""
    global _kept
    with _lock:
        if _kept or _LIBC is None:
            return _kept
        _kept = bool(
            _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
        if not _kept:
            log.warning(
                "mallopt refused the receiver's allocator settings: every frame's "
                "memory is fresh pages (slower, not wrong)"
            )
        return _kept


def give_back() -> None:
    """Return the free memory kept during a series to the kernel (malloc_trim)."""
    if _kept and _LIBC is not None:
        _LIBC.malloc_trim(0)


def bound_kept() -> None:
    """Return the free memory kept when it is more than ``KEEP_LIMIT`` (cheap enough for every
    tick of the engine: one lock per arena)."""
    if _kept and _LIBC is not None and _LIBC.mallinfo2().fordblks > KEEP_LIMIT:
        _LIBC.malloc_trim(0)
