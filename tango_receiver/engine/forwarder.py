"""The secondary PUSH port: every frame, in the internal format, for live processing.

A consumer that is slow, absent or gone must never slow the receiver down. The socket's send
high-water mark is the bounded queue; a message it cannot take is dropped at once and counted,
so the write path never waits on a consumer.
"""

from __future__ import annotations

import zmq

from ..messages import Buffer


class Forwarder:
    def __init__(self, ctx: zmq.Context, host: str, port: int, hwm: int) -> None:
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        bind_host = "*" if host in ("0.0.0.0", "*", "") else host
        if port:
            self.socket.bind(f"tcp://{bind_host}:{port}")
            self.port = port
        else:
            self.port = self.socket.bind_to_random_port(f"tcp://{bind_host}")

    def send(self, parts: list[Buffer]) -> bool:
        """Queue one message without waiting; False when the consumer cannot take it now."""
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        self.socket.close(linger=0)
