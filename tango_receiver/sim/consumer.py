"""A secondary-port consumer that is deliberately slow: what the receiver must never wait for."""

from __future__ import annotations

import time
from typing import Any

import zmq


def drain(port: int, delay_s: float, stop: Any, host: str = "127.0.0.1") -> None:
    """Take one message every ``delay_s`` until ``stop`` (an Event) is set."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 16)
    sock.connect(f"tcp://{host}:{port}")
    while not stop.is_set():
        if sock.poll(50):
            sock.recv_multipart(copy=False)
            time.sleep(delay_s)
    sock.close(linger=0)
    ctx.term()
