"""The C allocator of a receiver's process: freed frame memory is kept for the next frame.

A receiver allocates and frees blocks of the same few sizes thousands of times a second: ZMQ's
message buffers, decoded planes, compressed chunks. glibc's defaults give such a block back to
the kernel when it is freed (a block above the mmap threshold is unmapped; free space at the top
of an arena beyond the trim threshold is returned), so the next frame's block is fresh memory:
a page fault and a zeroed page for every 4 kB. perf in scenario 4 (PILATUS 2M) found 17% of all
samples in those faults; keeping the memory took scenario 4 from 108 to 140 frames/s.

So blocks up to glibc's largest mmap threshold (32 MB on 64-bit) come from the arenas, and free
memory stays in them while a series runs. What is kept is what the series needed at its peak,
which the byte-bounded queue and the sockets' high-water marks already bound; it goes back to
the kernel when the series ends (``give_back``). Each thread's arena keeps its own peak, though,
and when the writer falls behind those peaks add up (Zyla with 2 workers and a writer slowed to
15 ms a frame: 350 MB kept free beside 340 MB in use), so ``bound_kept`` gives it all back
whenever more than ``KEEP_LIMIT`` is kept; a running series keeps 10-60 MB in the bench's
scenarios. All of it is process-wide, set by the first receiver opened; where the C library is
not glibc (2.33 or later) nothing changes.
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
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


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
        _kept = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                     and _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        if not _kept:
            log.warning("mallopt refused the receiver's allocator settings: every frame's "
                        "memory is fresh pages (slower, not wrong)")
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
