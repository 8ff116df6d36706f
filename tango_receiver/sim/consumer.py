"""A secondary-port consumer that is deliberately slow: what the receiver must never wait for."""

from __future__ import annotations

import time
from typing import Any

import zmq

CATCH_UP_S = 0.002  # how far behind its pace the consumer may fall and then take messages at once


def drain(port: int, delay_s: float, stop: Any, host: str = "127.0.0.1") -> int:
    """Take one message every ``delay_s`` on average until ``stop`` (an Event) is set; how
    many it took.

    The pace is a deadline, not a sleep after each message: short sleeps overshoot, so one per
    message falls well short of the pace asked for (benchmarks/LOG.md). It sleeps only once it
    is ``CATCH_UP_S`` ahead, and never makes up for time it had nothing to take by more than
    that."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 16)
    sock.setsockopt(zmq.RCVTIMEO, 50)  # to look at ``stop`` while nothing comes
    sock.connect(f"tcp://{host}:{port}")
    due, taken = time.monotonic(), 0
    while not stop.is_set():
        try:
            sock.recv_multipart(copy=False)
        except zmq.Again:
            continue
        taken += 1
        now = time.monotonic()
        due = max(due, now - CATCH_UP_S) + delay_s
        if due - now > CATCH_UP_S:
            time.sleep(due - now)
    sock.close(linger=0)
    ctx.term()
    return taken
