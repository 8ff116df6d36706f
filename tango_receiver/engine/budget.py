"""Bytes in flight between the decoder workers and the engine thread.

A bound in messages bounds nothing when one raw EIGER2 16M frame is 72 MB: the queue is bounded
in bytes instead. A worker waits while the budget is spent (its socket then fills and the
detector's PUSH waits: back-pressure, never a drop); a batch larger than the whole budget still
passes when nothing else is in flight, so no frame size can deadlock the receiver; a batch
without frames (a header, a series end) costs nothing and always passes.

The engine gives bytes back when frames leave its hands, not when it takes them from the queue:
frames that wait in the ordering for a slower worker's frame stay counted. A batch the engine
cannot go on without passes however full the budget is (``needed``, the receiver's judgement),
or the workers and the ordering would wait for each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def _never() -> bool:
    return False


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used = 0
        self._changed = threading.Condition()

    def take(self, nbytes: int, timeout: float, needed: Callable[[], bool] = _never) -> bool:
        """Wait up to ``timeout`` for room; passes at once while ``needed()`` is true."""

        def fits() -> bool:
            return nbytes == 0 or self._used == 0 or self._used + nbytes <= self._limit or needed()

        with self._changed:
            passed = self._changed.wait_for(fits, timeout)
            if passed:
                self._used += nbytes
            return passed

    def give(self, nbytes: int) -> None:
        with self._changed:
            self._used -= nbytes
            self._changed.notify_all()
