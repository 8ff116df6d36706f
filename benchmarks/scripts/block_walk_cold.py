"""The bitshuffle-LZ4 block walk on chunks not in cache, as a receiver meets them.

    .venv/bin/python benchmarks/scripts/block_walk_cold.py [--mb 300]

A chunk just received was written by ZMQ's I/O thread, so its lines are not in the walking
core's cache. Here each chunk kind is copied into as many distinct buffers as fill ``--mb`` MB,
far more than any cache, and each is walked once; the time per walk is the best of three passes.
To compare with another build, run the same script with that checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tango_receiver.codecs.bslz4 import block_table, encode_chunk, walk_blocks
from tango_receiver.sim.frames import synthetic_frames

FOUR_M, ONE_M = (2162, 2068), (1065, 1030)


def kinds() -> dict[str, np.ndarray]:
    """From sparse (small blocks) to incompressible (8 kB blocks)."""
    noise = np.random.default_rng(1).integers(0, 2**31, (1024, 1024), dtype=np.uint32)
    return {
        "1M, 0.002 photons": synthetic_frames(1, ONE_M, "uint32", rate=0.002, seed=7)[0],
        "4M, 0.05 photons": synthetic_frames(1, FOUR_M, "uint32", rate=0.05, seed=7)[0],
        "4M, 1 photon": synthetic_frames(1, FOUR_M, "uint32", rate=1.0, seed=7)[0],
        "4M, 20 photons": synthetic_frames(1, FOUR_M, "uint32", rate=20.0, seed=7)[0],
        "4 MB of noise": noise,
    }


def cold_walk_us(frame: np.ndarray, total_bytes: int) -> tuple[int, int, float]:
    """(chunk bytes, blocks, us per walk)."""
    chunk = encode_chunk(frame)
    _, n_blocks, _ = block_table(memoryview(chunk), frame.shape, frame.dtype)
    buffers = [bytearray(chunk) for _ in range(max(4, total_bytes // len(chunk)))]
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for buffer in buffers:
            walk_blocks(buffer, n_blocks)
        passes.append((time.perf_counter() - start) / len(buffers))
    return len(chunk), n_blocks, min(passes) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300, help="memory the copies fill")
    args = parser.parse_args()
    for name, frame in kinds().items():
        size, blocks, us = cold_walk_us(frame, args.mb << 20)
        print(
            f"{name:18s} {size / 1e3:8.0f} kB {blocks:5d} blocks  {us:7.1f} us a walk", flush=True
        )


if __name__ == "__main__":
    main()
