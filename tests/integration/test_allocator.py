"""The receiver's allocator policy, observed in fresh interpreters: a frame-sized block freed is
kept for the next frame, and given back to the kernel at the series' end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tango_receiver.engine import allocator

pytestmark = pytest.mark.skipif(allocator._LIBC is None, reason="the C library is not glibc")

# 24 MB blocks (an 11 MB Zyla frame and its compressed copy are this order) are allocated,
# touched and freed; RSS is read after the free, after bound_kept() and after give_back().
PROBE = """
import ctypes, json, sys
from tango_receiver.engine import allocator

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else False
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
start = rss_mb()
blocks = [libc.malloc(24 << 20) for _ in range(int(sys.argv[2]))]
for block in blocks:
    ctypes.memset(block, 1, 24 << 20)
for block in blocks:
    libc.free(ctypes.c_void_p(block))
freed = rss_mb()
allocator.bound_kept()
bounded = rss_mb()
allocator.give_back()
print(json.dumps({"kept": kept, "after_free": freed - start, "after_bound": bounded - start,
                  "after_give_back": rss_mb() - start}))
"""


def probe(mode: str, blocks: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(blocks)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return json.loads(out)


def test_a_freed_frame_stays_in_the_process_until_the_series_ends():
    result = probe("keep")
    assert result["kept"]
    assert result["after_free"] > 20  # kept: the next frame reuses these pages
    assert result["after_bound"] > 20  # well under the limit: still kept
    assert result["after_give_back"] < 4  # the series' end returned them


def test_more_free_memory_than_the_limit_goes_back_before_the_series_ends():
    blocks = allocator.KEEP_LIMIT // (24 << 20) + 2
    result = probe("keep", blocks)
    assert result["after_free"] > 24 * blocks - 4
    assert result["after_bound"] < 4


def test_glibc_defaults_give_a_frame_back_at_once():
    """The comparison that makes the test above mean something: without the policy, the same
    block is unmapped when freed, and the next frame faults in fresh pages."""
    result = probe("default")
    assert not result["kept"]
    assert result["after_free"] < 4
