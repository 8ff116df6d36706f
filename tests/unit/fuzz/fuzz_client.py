"""Random and mutated image messages at ``tango_receiver.client.decode_image``: a ValueError or
an array, never anything else, and never a crash (that is why it runs as a child process).

    python tests/unit/fuzz/fuzz_client.py --cases 1000000 --seconds 600 --seed 7

Mutations aim where bitshuffle's C decoder is blind: the 12-byte chunk header, the block
lengths it follows, the blob's end; and at the JSON header's shape, type, compression and
channels. Exit status 0 and a last line ``N cases, M decoded`` when nothing went wrong.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback

import bitshuffle
import numpy as np
import zmq

import tango_receiver  # noqa: F401, I001 - first: one OpenMP thread for bitshuffle, as in the receiver
from tango_receiver.client import decode_image, decode_images
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.codecs.limits import DTYPE_NAMES

TYPES = sorted(DTYPE_NAMES)  # every pixel type the receiver forwards
SHAPES = [(1,), (7,), (8,), (13, 11), (64, 64), (3, 5, 7), (2, 1030)]
BAD_VALUES = [0, -1, 8, 12, 2**31, 2**32 - 1, 2**63, 2**64 - 1, None, "16", 1.5, True, [], {}]


def seeds(rng: random.Random) -> list[tuple[dict, bytes]]:
    """Valid messages of every type and a few shapes: bslz4 with and without the chunk
    header, and raw."""
    out = []
    for dtype in TYPES:
        for shape in SHAPES:
            array = (np.arange(int(np.prod(shape))) * rng.randint(1, 9) % 251).astype(dtype)
            array = array.reshape(shape)
            head = {
                "htype": "image",
                "msg_number": 1,
                "frame": 0,
                "shape": list(shape),
                "type": dtype,
            }
            out.append((head | {"compression": "bslz4"}, encode_chunk(array)))
            out.append((head | {"compression": "bslz4"}, bitshuffle.compress_lz4(array).tobytes()))
            out.append((head | {"compression": "none"}, array.tobytes()))
    return out


def mutate_blob(rng: random.Random, blob: bytes) -> bytes:
    data = bytearray(blob)
    action = rng.randrange(8)
    if action == 0 and data:  # flip bytes, mostly near the start (header, first lengths)
        for _ in range(rng.randint(1, 4)):
            data[min(int(rng.expovariate(1 / 24)), len(data) - 1)] ^= rng.randint(1, 255)
    elif action == 1:
        del data[rng.randint(0, len(data)) :]
    elif action == 2:
        data += rng.randbytes(rng.randint(1, 64))
    elif action == 3 and len(data) >= 12:  # the header's size or block size
        at, size = rng.choice([(0, 8), (8, 4)])
        value = rng.choice([0, 1, 8, 12, 2**31, 2**size * 8 - 1, rng.getrandbits(size * 8)])
        data[at : at + size] = (value % 2 ** (size * 8)).to_bytes(size, "big")
    elif action == 4 and len(data) >= 16:  # a block length somewhere in the table
        at = rng.randrange(12, len(data) - 3)
        data[at : at + 4] = struct.pack(">I", rng.choice([0, 1, len(data), 2**31, 2**32 - 1]))
    elif action == 5:
        return rng.randbytes(rng.randint(0, 300))
    elif action == 6 and data:  # a run of bytes set to one value
        at = rng.randrange(len(data))
        data[at : at + rng.randint(1, 32)] = bytes([rng.choice([0, 0xFF])]) * rng.randint(1, 32)
    else:
        data = data[:12] + data[12 + rng.randint(0, 8) :]  # bytes gone from inside
    return bytes(data)


def mutate_head(rng: random.Random, head: dict) -> object:
    head = dict(head)
    action = rng.randrange(9)
    if action == 0:
        head["shape"] = rng.choice(
            [
                [rng.choice(BAD_VALUES)],
                [4, 0],
                [2**20, 2**20],
                "12",
                5,
                [1] * 5,
                [[3]],
                None,
                [2**14, 2**14, 8],
            ]
        )
    elif action == 1:
        head["type"] = rng.choice(
            ["mono12p", "bool", "object", ">u2", "U8", "", None, 7, "complex64", "V8"]
        )
    elif action == 2:
        head["compression"] = rng.choice(["lz4", "cbf", "", None, 1, "BSLZ4"])
    elif action == 3:
        head["channels"] = rng.choice(
            [
                [],
                "data",
                [None],
                [head, head],
                [{"name": 3} | head],
                [head | {"shape": [2, 2]}],
                None,
            ]
        )
    elif action == 4:
        return rng.choice([None, [], "image", 3, b"{}"])
    elif action == 5:
        del head[rng.choice(["shape", "type", "compression"])]
    elif action == 6:
        head["htype"] = rng.choice(["header", "series_end", None, 5])
    elif action == 7:  # the shape of another type: sizes that disagree with the chunk
        head["type"] = rng.choice(TYPES)
    else:
        head["shape"] = list(rng.choice(SHAPES))
    return head


def as_buffer(rng: random.Random, blob: bytes) -> object:
    """The kinds of buffer a consumer hands over."""
    kind = rng.randrange(5)
    if kind == 0:
        return memoryview(blob)
    if kind == 1:
        return zmq.Frame(blob)
    if kind == 2:
        return bytearray(blob)
    if kind == 3 and len(blob) % 2 == 0:
        return np.frombuffer(blob, np.uint16)
    return blob


def run(cases: int, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    pool = seeds(rng)
    for head, blob in pool:  # the seeds themselves decode
        decode_image(head, blob)
    deadline = time.monotonic() + seconds
    decoded = done = 0
    while done < cases and time.monotonic() < deadline:
        head, blob = rng.choice(pool)
        if rng.random() < 0.8:
            blob = mutate_blob(rng, blob)
        if rng.random() < 0.3:
            head = mutate_head(rng, head)
        try:
            if rng.random() < 0.5:
                decode_image(head, as_buffer(rng, blob))
            else:
                decode_images(head, [as_buffer(rng, blob)])
            decoded += 1
        except ValueError:
            pass
        except Exception:
            print(f"case {done}: head {head!r:.300} blob {blob[:64]!r} ({len(blob)} bytes)")
            traceback.print_exc()
            return 1
        done += 1
    print(f"{done} cases, {decoded} decoded")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.exit(run(args.cases, args.seconds, args.seed))
