"""Thousands of random and mutated blobs at ``decode_image`` in a child process: it must exit
normally, since a crash in bitshuffle's C code would take a test process down with it (see
tests/unit/fuzz/fuzz_client.py for what is mutated, and for longer runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).parent / "fuzz" / "fuzz_client.py"


@pytest.mark.parametrize("seed", [1, 2])
def test_decode_image_survives_random_and_mutated_blobs(seed):
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--cases", "50000", "--seconds", "10", "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-3000:], result.stderr[-3000:])
    done, decoded = (int(word) for word in result.stdout.split()[-4::2])
    assert done >= 5000, result.stdout  # bounded by time on a slow machine, never by luck
    assert 0 < decoded < done  # some mutations still decode, most are refused
