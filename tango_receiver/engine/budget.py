"""Bytes in flight between the decoder workers and the engine thread.

A bound in messages bounds nothing when one raw EIGER2 16M frame is 72 MB: the queue is bounded
in bytes instead. A worker waits while the budget is spent (its socket then fills and the
detector's PUSH waits: back-pressure, never a drop); a batch larger than the whole budget still
passes when nothing else is in flight, so no frame size can deadlock the receiver.
"""

from __future__ import annotations

import threading


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = threading.Condition()

    def take(self, nbytes: int, timeout: float) -> bool:
        with self._changed:
            fits = self._changed.wait_for(
                lambda: self._used == 0 or self._used + nbytes <= self._limit, timeout)
            if fits:
                self._used += nbytes
            return fits

    def give(self, nbytes: int) -> None:
        with self._changed:
            self._used -= nbytes
            self._changed.notify_all()
