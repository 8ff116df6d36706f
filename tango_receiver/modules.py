"""One message per module, put together into one set per message number (X-Spectrum Lambda).

Each module of a multi-module detector streams on its own socket, with its own ``msg_number``
sequence that starts again at every series header. A set is formed from the oldest message
every module has queued; which is oldest follows from the numbers: within a series the lowest
``msg_number``, and a header (the start of the next series) after everything else. Sockets
deliver in order, so

- a module whose next message is newer than the set's has lost the set's message: it is reported
  missing from that set and its message waits for the next set, so the modules stay in step;
- a module whose message is older than the others' (a duplicate, the tail of a series the others
  have ended) goes out on its own, reported, and does not hold the others;
- a module that sends nothing holds a set for at most ``timeout_s``: then the set goes out
  without it, reported, and nothing behind it stalls.

Pure logic with an injectable clock: no sockets, no threads.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .messages import Parts


@dataclass(frozen=True, slots=True)
class ModuleGap:
    """Why a module has no message in a set."""

    reason: str


ModuleSet = list  # one entry per module: its Parts, or a ModuleGap


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message stands in its module's stream: headers start the next series."""

    number: int
    header: bool

    @property
    def order(self) -> tuple[bool, int]:
        return (self.header, self.number)

    def __str__(self) -> str:
        return "the header of a new series" if self.header else f"msg_number {self.number}"


@dataclass(frozen=True, slots=True)
class _Pending:
    arrived: float
    position: Position | None  # None: the message does not say
    parts: Parts


class ModuleAligner:
    def __init__(
        self, modules: int, timeout_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._queues: list[deque[_Pending]] = [deque() for _ in range(modules)]

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues)

    def push(self, module: int, position: Position | None, parts: Parts) -> None:
        self._queues[module].append(_Pending(self.clock(), position, parts))

    def pop_ready(self) -> list[ModuleSet]:
        """Every set that is complete, or that has waited ``timeout_s`` for a silent module."""
        ready = []
        while (found := self._next_set()) is not None:
            ready.append(found)
        return ready

    def _next_set(self) -> ModuleSet | None:
        heads = [q[0] if q else None for q in self._queues]
        present = [h for h in heads if h is not None]
        if not present:
            return None
        if any(h.position is None for h in present):  # alone, so the decoder can say what it is
            return [
                self._take(i)
                if h is not None and h.position is None
                else ModuleGap("not compared: another module's message is unreadable")
                for i, h in enumerate(heads)
            ]
        orders = {id(h): h.position.order for h in present if h.position is not None}
        target = min(orders.values())
        oldest = min(h.arrived for h in present if orders[id(h)] == target)
        if len(present) < len(heads) and self.clock() - oldest < self.timeout_s:
            return None  # a module may still be on its way
        return [
            self._take(i) if h is not None and orders[id(h)] == target else self._gap(h)
            for i, h in enumerate(heads)
        ]

    def _take(self, module: int) -> Parts:
        return self._queues[module].popleft().parts

    def _gap(self, head: _Pending | None) -> ModuleGap:
        if head is None:
            return ModuleGap(f"sent nothing within {self.timeout_s:g} s")
        return ModuleGap(f"out of step: its next message is {head.position}")
