"""The secondary PUSH port: every frame, in the internal format, for live processing.

A consumer that is slow, absent or gone must never slow the receiver down: a message the port
cannot take is dropped at once and counted, so the write path never waits on a consumer. A
socket monitor tells whether anyone is connected: a frame nobody was there to take is not a loss
that should raise an alarm, a frame a connected consumer could not keep up with is.

What the port holds is bounded in bytes (FORWARD_BYTES), by what is actually queued, whatever
size the entry declares: a message count taken from the declared shape dropped a burst of
smaller frames (a gap released at once) that a draining consumer would have taken. ZMQ does not
say what its queue holds, but it says when it is done with a message it was given without a
copy (``zmq.Frame(track=True)``, done once the message has been written to the kernel, or
dropped with its consumer). One message in every ``budget // TRACK_SHARE`` bytes is tracked, so
the account costs a tracker per megabyte or two rather than per frame; since a PUSH queue sends
in order, a tracked message done means that everything sent before it is done too. The account
counts what was sent since the oldest tracker not yet done: never less than ZMQ holds (with
several consumers, whose queues are served in turn, that holds for each consumer's queue).
"""

from __future__ import annotations

from collections import deque

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..messages import FrameRun, Message

SENT, DROPPED, NO_CONSUMER = "sent", "dropped", "no_consumer"
FORWARD_BYTES = 128 << 20  # what the port may queue for a slow consumer
TRACK_SHARE = 64  # trackers per budget: the account's grain is budget // TRACK_SHARE bytes
# plain ints: pyzmq's enum members cost an Enum construction per ``&``, on every frame
EVENTS, POLLIN, POLLOUT = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.POLLOUT)


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
        self._budget, self._grain = FORWARD_BYTES, max(1, FORWARD_BYTES // TRACK_SHARE)
        self._sent = 0  # bytes handed to ZMQ, ever
        self._done = 0  # ... of which ZMQ is known to be done with
        self._tracked = 0  # _sent at the last tracked message
        self._trackers: deque[tuple[zmq.MessageTracker, int]] = deque()  # (tracker, _sent then)

    @property
    def queued(self) -> int:
        """Bytes ZMQ may still hold (at most one grain more than it does)."""
        trackers = self._trackers
        while trackers and trackers[0][0].done:
            self._done = trackers.popleft()[1]
        return self._sent - self._done

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
        parts = message.to_wire()
        size = sum(memoryview(part).nbytes for part in parts)
        if self._sent - self._done + size > self._budget and self.queued + size > self._budget:
            return False
        tracked = None
        if self._sent + size - self._tracked >= self._grain:
            # the last part: ZMQ is done with a message once it has sent its last part
            tracked = zmq.Frame(parts[-1], copy=False, track=True)
            parts = [*parts[:-1], tracked]
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # the consumer went between the question and the send
            return False
        self._sent += size
        if tracked is not None:
            self._tracked = self._sent
            self._trackers.append((tracked.tracker, self._sent))
        return True

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
