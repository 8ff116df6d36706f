"""A PUSH socket that plays a detector: binds, waits for the receiver, sends at a given rate."""

from __future__ import annotations

import time
from collections.abc import Iterable

import zmq
from tqdm import tqdm

Message = list  # parts of one multipart message


class Sender:
    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", sndhwm: int = 1000, timeout_s: float = 30.0
    ) -> None:
        self._ctx = zmq.Context()
        self.socket = self._ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, sndhwm)
        self.socket.setsockopt(zmq.LINGER, int(timeout_s * 1000))
        # a receiver that never comes must fail a test, not hang it
        self.socket.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        if port:
            self.socket.bind(f"tcp://{host}:{port}")
            self.port = port
        else:
            self.port = self.socket.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{self.port}"

    def send(
        self,
        messages: Iterable[Message],
        rate: float | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> int:
        """Send every message (blocking: a detector's PUSH waits for its receiver)."""
        interval = 1.0 / rate if rate else 0.0
        start = time.perf_counter()
        sent = 0
        for parts in tqdm(messages, total=total, disable=not progress, unit="msg"):
            if interval:
                delay = start + sent * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.socket.send_multipart(parts, copy=False)
            sent += 1
        return sent

    def close(self) -> None:
        self.socket.close()
        self._ctx.term()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
