"""A PULL socket on a receiver's secondary port, as an iterator of typed messages.

The receiver never waits for a consumer: what a consumer does not take in time is dropped
there and shows here as ``missing`` numbers. Blobs are received without a copy
(``copy=False``): an image's blobs are ZMQ's own buffers, kept alive by the message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType

import zmq

from .messages import Message, Tracker, parse

log = logging.getLogger(__name__)

RCVHWM = 256  # messages buffered here; the receiver's own queue for a slow consumer is beside


def endpoint_of(text: str) -> str:
    """``tcp://host:port`` from that, ``host:port`` or a bare port (on this machine)."""
    if "://" in text:
        return text
    if text.isdigit():
        return f"tcp://127.0.0.1:{text}"
    return f"tcp://{text}"


class Consumer:
    """Iterate over what a receiver forwards::

        with Consumer("tcp://receiver-host:9100", timeout_s=10) as stream:
            for message in stream:            # ends after timeout_s without a message
                                              # (itertools.islice(stream, n): n messages)
                if isinstance(message, ImageMessage):
                    process(message.frame, message.array)

    Each message carries its ``position`` (numbers missing before it, out of order, outside
    a series); ``missing`` and ``received`` count all of them. ``timeout_s=None`` waits forever.
    """

    def __init__(
        self,
        endpoint: str,
        timeout_s: float | None = 5.0,
        rcvhwm: int = RCVHWM,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint_of(endpoint)
        self.timeout_s = timeout_s
        self._own_context = context is None
        self._ctx = zmq.Context() if context is None else context
        self._socket = self._ctx.socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._socket.connect(self.endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise ValueError(f"cannot connect to {self.endpoint!r}: {exc}") from None
        self._tracker = Tracker()
        self.received = 0
        self.closed = False
        log.debug("consuming %s", self.endpoint)

    @property
    def missing(self) -> int:
        """Message numbers skipped in every series seen so far."""
        return self._tracker.missing

    def receive(self, timeout_s: float | None = None) -> Message:
        """The next message; TimeoutError after ``timeout_s`` (default: the consumer's)."""
        wait = self.timeout_s if timeout_s is None else timeout_s
        if self.closed:
            raise ValueError("consumer is closed")
        if not self._socket.poll(None if wait is None else int(wait * 1000)):
            raise TimeoutError(f"no message from {self.endpoint} within {wait} s")
        message = parse(self._socket.recv_multipart(copy=False))
        message.position = self._tracker.place(message)
        self.received += 1
        return message

    def __iter__(self) -> Iterator[Message]:
        while not self.closed:
            try:
                yield self.receive()
            except TimeoutError:
                return

    def close(self) -> None:
        """Close the socket at once (nothing to send, so nothing to linger for)."""
        if getattr(self, "closed", False):
            return
        self.closed = True
        self._socket.close(linger=0)
        if self._own_context:
            self._ctx.term()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
