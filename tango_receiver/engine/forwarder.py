"""The secondary PUSH port: every frame, in the internal format, for live processing.

A consumer that is slow, absent or gone must never slow the receiver down. The socket's send
high-water mark is the bounded queue; a message it cannot take is dropped at once and counted,
so the write path never waits on a consumer. A socket monitor tells whether anyone is connected:
a frame nobody was there to take is not a loss that should raise an alarm, a frame a connected
consumer could not keep up with is.
"""

from __future__ import annotations

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..messages import FrameRun, Message
from ..receiver_config import ReceiverConfig

SENT, DROPPED, NO_CONSUMER = "sent", "dropped", "no_consumer"
FORWARD_BYTES = 128 << 20  # what the port may queue for a slow consumer
# plain ints: pyzmq's enum members cost an Enum construction per ``&``, on every frame
EVENTS, POLLIN, POLLOUT = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.POLLOUT)


def forward_hwm(config: ReceiverConfig) -> int:
    """Messages the port queues for a consumer: the entry's ``forward_hwm``, fewer where the
    entry's ``shape`` and ``dtype`` say that many raw frames would pass FORWARD_BYTES."""
    return min(config.forward_hwm, config.frames_in(FORWARD_BYTES) or config.forward_hwm)


class Forwarder:
    def __init__(self, ctx: zmq.Context, host: str, port: int, hwm: int) -> None:
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        bind_host = "*" if host in ("0.0.0.0", "*", "") else host
        try:
            if port:
                self.socket.bind(f"tcp://{bind_host}:{port}")
                self.port = port
            else:
                self.port = self.socket.bind_to_random_port(f"tcp://{bind_host}")
        except zmq.ZMQError:
            self.socket.close(linger=0)  # else the context cannot terminate
            raise
        self._monitor = self.socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.consumers = 0

    def send(self, message: Message) -> str:
        """Queue one message without waiting: SENT, DROPPED (a consumer could not take it) or
        NO_CONSUMER.

        Asking whether the socket can take a message is cheaper than a send that fails (pyzmq
        raises), and with no or a slow consumer most sends would fail. The message is put into
        wire form only when it can go."""
        return SENT if self._ready() and self._push(message) else self._unsent()

    def send_run(self, run: FrameRun) -> tuple[int, str]:
        """(frames sent, what became of the rest: DROPPED or NO_CONSUMER) for a fast-lane run:
        its frames are sent while the socket takes them, and made into images only then."""
        sent = 0
        while sent < len(run) and self._ready() and self._push(run.image(sent)):
            sent += 1
        return sent, self._unsent() if sent < len(run) else SENT

    def _ready(self) -> bool:
        return bool(self.socket.get(EVENTS) & POLLOUT)

    def _push(self, message: Message) -> bool:
        try:
            self.socket.send_multipart(message.to_wire(), flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:  # the consumer went between the question and the send
            return False

    def _unsent(self) -> str:
        self.watch()
        return DROPPED if self.consumers else NO_CONSUMER

    def watch(self) -> None:
        """Count consumers from the monitor's connect and disconnect events (asked of the
        socket's state: a poll would cost a Poller per frame)."""
        while self._monitor.get(EVENTS) & POLLIN:
            event = recv_monitor_message(self._monitor)["event"]
            self.consumers += 1 if event == zmq.EVENT_ACCEPTED else -1

    def close(self) -> None:
        self.socket.disable_monitor()
        self._monitor.close(linger=0)
        self.socket.close(linger=0)
