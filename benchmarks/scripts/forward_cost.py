"""CPU per forwarded frame of the secondary port, against another revision's forwarder.

    .venv/bin/python benchmarks/scripts/forward_cost.py [REV] [--size 38000] [--frames 20000]

Both forwarders send the same images (a JSON part and a chunk of ``--size`` bytes, as the
Python path forwards them) to a consumer process that drains as fast as it can; what is timed
is the sending thread's CPU (``time.thread_time``) per frame, runs taking turns.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import zmq

from tango_receiver.engine import forwarder as current
from tango_receiver.messages import Channel, Image

ROOT = Path(__file__).resolve().parents[2]


def revision(rev: str):
    """tango_receiver/engine/forwarder.py as it was at ``rev``, as a module."""
    source = subprocess.run(["git", "show", f"{rev}:tango_receiver/engine/forwarder.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("tango_receiver.engine.forwarder_then", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tango_receiver.engine"
    exec(compile(source, f"{rev}:forwarder.py", "exec"), module.__dict__)
    return module


def drain(port: int, stop) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.connect(f"tcp://127.0.0.1:{port}")
    while not stop.is_set():
        if sock.poll(50):
            sock.recv_multipart(copy=False)
    sock.close(linger=0)
    ctx.term()


def run(module, frames: int, size: int) -> tuple[float, int]:
    """(CPU us per frame, frames sent)."""
    ctx = zmq.Context()
    fwd = module.Forwarder(ctx, "127.0.0.1", 0, 65536)
    stop = mp.Event()
    consumer = mp.Process(target=drain, args=(fwd.port, stop))
    consumer.start()
    while fwd.consumers == 0:
        fwd.watch()
        time.sleep(0.01)
    chunk = bytes(range(256)) * (size // 256)
    images = [Image(i + 1, i, [Channel("data", (size,), "uint8", "bslz4", chunk)])
              for i in range(frames)]
    sent = 0
    cpu = time.thread_time()
    for image in images:
        sent += module.Forwarder.send(fwd, image) == module.SENT
        if sent % 64 == 0:
            time.sleep(0)  # as the engine, which receives between two batches
    cpu = time.thread_time() - cpu
    stop.set()
    consumer.join()
    fwd.close()
    ctx.term()
    return cpu / frames * 1e6, sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", nargs="?", default="HEAD")
    parser.add_argument("--size", type=int, default=38_000)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    modules = {args.rev: revision(args.rev), "working tree": current}
    for _ in range(args.rounds):
        for name, module in modules.items():
            us, sent = run(module, args.frames, args.size)
            print(f"{name:>14}: {us:6.2f} us CPU a frame, {sent} of {args.frames} sent",
                  flush=True)


if __name__ == "__main__":
    sys.exit(main())
