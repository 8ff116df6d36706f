"""The upstream sockets of a decoder worker: PULL sockets, batches, and how much they buffer.

A worker takes every message already waiting in one go (up to a batch), so the hand-over to
the engine thread happens once per batch: with the GIL, hand-overs cost more than the work at
small frames.
"""

from __future__ import annotations

from typing import Any, Protocol

import zmq

from .decoding import json_head
from .messages import Parts
from .modules import ModuleAligner, ModuleGap, ModuleSet, Position
from .receiver_config import ReceiverConfig

BATCH_MESSAGES = 64  # messages a worker takes from its socket in one go ...
BATCH_BYTES = 8 << 20  # ... or this many bytes, whichever comes first
RCVHWM = 64  # messages a worker's socket buffers at most: beyond, the detector's PUSH waits
SOCKET_BYTES = 256 << 20  # what the upstream sockets of one receiver may buffer, all together


def receive_hwm(config: ReceiverConfig) -> int:
    """Messages one socket may buffer: many small frames (they are taken in batches), few big
    ones, so that all the receiver's sockets together hold at most SOCKET_BYTES."""
    return min(RCVHWM, config.frames_in(SOCKET_BYTES // config.nworkers) or RCVHWM)


class Upstream(Protocol):
    """What a decoder worker reads from: ``Source``, ``ModuleSource`` or the v1 ``LaneSource``."""

    def receive(self, timeout_ms: int) -> list[Any]: ...

    def close(self) -> None: ...


class Source:
    """The upstream sockets of one decoder worker."""

    def __init__(self, ctx: zmq.Context, endpoints: list[str], rcvhwm: int) -> None:
        self.socket = pull_socket(ctx, endpoints, rcvhwm)

    def receive(self, timeout_ms: int) -> list[Parts]:
        """The messages waiting now, after up to ``timeout_ms`` for the first (none: [])."""
        if not self.socket.poll(timeout_ms):
            return []
        return drain(self.socket)

    def close(self) -> None:
        self.socket.close(linger=0)


class ModuleSource:
    """One PULL socket per detector module; ``receive`` hands out module sets (one message per
    module, see modules.py), so one worker must own all the sockets."""

    def __init__(
        self, ctx: zmq.Context, endpoints: list[str], rcvhwm: int, timeout_s: float
    ) -> None:
        self.sockets = [pull_socket(ctx, [endpoint], rcvhwm) for endpoint in endpoints]
        self.poller = zmq.Poller()
        for sock in self.sockets:
            self.poller.register(sock, zmq.POLLIN)
        self.aligner = ModuleAligner(len(endpoints), timeout_s)

    def receive(self, timeout_ms: int) -> list[ModuleSet]:
        for sock, _ in self.poller.poll(timeout_ms):
            module = self.sockets.index(sock)
            for parts in drain(sock):
                self.aligner.push(module, _position(parts), parts)
        return self.aligner.pop_ready()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)


def pull_socket(ctx: zmq.Context, endpoints: list[str], rcvhwm: int) -> zmq.Socket:
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.LINGER, 0)
    for endpoint in endpoints:
        sock.connect(endpoint)
    return sock


def drain(sock: zmq.Socket) -> list[Parts]:
    """What the socket holds now, up to one batch (BATCH_MESSAGES or BATCH_BYTES)."""
    batch: list[Parts] = []
    size = 0
    try:
        while len(batch) < BATCH_MESSAGES and size < BATCH_BYTES:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            batch.append(parts)
            size += sum(len(p) for p in parts)
    except zmq.Again:
        pass
    return batch


def wire_nbytes(parts: Parts | ModuleSet) -> int:
    """Bytes of a message as it arrived (a module set: of all its modules' messages)."""
    if parts and isinstance(parts[0], (list, ModuleGap)):
        return sum(0 if isinstance(p, ModuleGap) else wire_nbytes(p) for p in parts)
    return sum(map(len, parts))  # zmq.Frame and bytes: len is the size in bytes


def _position(parts: Parts) -> Position | None:
    """Where a module's message stands in its stream, or None when its header part does not say."""
    head = json_head(parts) or {}
    number = head.get("msg_number")
    if type(number) is not int or number < 0:
        return None
    return Position(number, head.get("htype") == "header")
