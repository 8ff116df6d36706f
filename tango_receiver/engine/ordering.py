"""Restore ``msg_number`` order across decoder workers, without ever stalling a series.

Several workers pull from one upstream, so messages arrive shuffled. A missing message must not
hold everything behind it forever: once the head of the line has waited ``gap_timeout_s`` the
gap is counted as missing and the series moves on. Duplicates, and frames that belong to no
series, are counted and dropped, so nothing is ever written twice.

Pure logic with an injectable clock: no threads, no sockets, so the rules are tested directly.
It counts the bytes of the frames it holds, so that the receiver's byte budget bounds them too:
frames waiting here for a slow worker's frame are memory like any other.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..messages import Header, Image, Message, SeriesEnd

#: After a series_end has arrived, stragglers from other workers get at most this long.
END_GRACE_S = 0.25
#: Undecodable messages remembered per series so that they are not counted missing as well;
#: beyond (a stream of garbage), the rest may be counted twice, never held without bound.
MAX_REJECTED = 65536


@dataclass
class OrderingCounts:
    missing: int = 0
    duplicate: int = 0
    outside: int = 0


@dataclass
class Ordering:
    gap_timeout_s: float
    #: one part of a split stream: the numbers between ours went to other receivers
    expect_gaps: bool = False
    clock: Callable[[], float] = time.monotonic
    counts: OrderingCounts = field(default_factory=OrderingCounts)
    in_series: bool = False
    #: bytes of the images held (waiting for a predecessor, or for their series' header)
    held_bytes: int = field(default=0, init=False)
    _expected: int = 0
    _end_number: int | None = None
    _heap: list[tuple[int, int, Message]] = field(default_factory=list)
    _numbers: set[int] = field(default_factory=set)
    _blocked_since: float | None = None
    _end_seen_at: float | None = None
    _early: list[tuple[float, Message]] = field(default_factory=list)
    _rejected: set[int] = field(default_factory=set)
    _tiebreak: int = 0

    @property
    def pending(self) -> int:
        return len(self._heap) + len(self._early)

    @property
    def waits_for(self) -> int | None:
        """The number that frames held here wait for; None when nothing waits."""
        return self._expected if self.in_series and self._heap else None

    def patience_used(self) -> float:
        """The share the head of the line has used of its wait (the gap timeout, or the
        grace once the series' end has arrived); at 1 its gap is given up. 0: nothing waits."""
        since = self._blocked_since
        if since is None or self.waits_for is None:
            return 0.0
        grace = END_GRACE_S if self._end_seen_at is not None else self.gap_timeout_s
        return (self.clock() - since) / min(grace, self.gap_timeout_s)

    def push(self, msg: Message) -> list[Message]:
        """Take one message; return those now ready, in order."""
        if isinstance(msg, Header):
            return self._start(msg)
        if not self.in_series:
            self._early.append((self.clock(), msg))  # may precede its header across workers
            self.held_bytes += _held(msg)
            return []
        number = msg.msg_number
        if isinstance(msg, SeriesEnd):
            self._end_seen_at = self.clock()
            if number is None:  # after the announced images, or after the last seen if more came
                number = max(self._end_number or 0, self._last_number() + 1)
                msg = SeriesEnd(number)
        assert number is not None  # images and runs always carry theirs
        if self.expect_gaps and not isinstance(msg, SeriesEnd):
            return self._pass_through(number, msg)
        if number == self._expected and not self._heap:  # in order: the common case
            self._expected += 1
            if isinstance(msg, SeriesEnd):
                self._end_series()
            return [msg]
        if number < self._expected or number in self._numbers:
            self.counts.duplicate += 1
            return []
        self._numbers.add(number)
        self._tiebreak += 1
        heapq.heappush(self._heap, (number, self._tiebreak, msg))
        self.held_bytes += _held(msg)
        return self._release()

    def take_run(self, first: int, count: int) -> bool:
        """Take ``count`` messages numbered from ``first`` at once when they are exactly what
        comes next (nothing held, no gap): a fast-lane run in a running series. False: nothing
        was taken, push them one by one."""
        if not self.in_series or self.expect_gaps or self._heap or first != self._expected:
            return False
        self._expected += count
        return True

    def reject(self, number: int) -> None:
        """A message numbered ``number`` arrived but could not be decoded (counted invalid by
        the caller): a gap over its number is not also counted missing.

        Its place is not taken: were a valid message with the same number to come after it,
        that one is written."""
        if self.in_series and number >= self._expected and len(self._rejected) < MAX_REJECTED:
            self._rejected.add(number)

    def poll(self) -> list[Message]:
        """Give up on gaps that waited too long; drop early messages no header claimed."""
        now = self.clock()
        if self._early and now - self._early[0][0] > self.gap_timeout_s:
            gone = [m for t, m in self._early if now - t > self.gap_timeout_s]
            self._early = [(t, m) for t, m in self._early if now - t <= self.gap_timeout_s]
            self.counts.outside += len(gone)
            self.held_bytes -= sum(map(_held, gone))
        if self.patience_used() < 1:
            return []
        self._skip_to(self._heap[0][0])
        return self._release()

    def flush(self) -> list[Message]:
        """Everything still held, in order, gaps counted as missing (restart, stop, abort)."""
        out: list[Message] = []
        while self.in_series and self._heap:
            self._skip_to(self._heap[0][0])
            out.extend(self._release())
        return out

    def _start(self, header: Header) -> list[Message]:
        out = self.flush()
        self.in_series = True
        self._expected = header.msg_number + 1
        self._end_number = header.nimages + 1 if header.nimages else None
        self._heap, self._numbers, self._rejected = [], set(), set()
        self._blocked_since = self._end_seen_at = None
        early, self._early = self._early, []
        self.held_bytes -= sum(_held(m) for _, m in early)  # pushed again below
        out.append(header)
        for _, msg in early:
            if msg.msg_number is not None and msg.msg_number <= header.msg_number:
                self.counts.outside += 1  # older than this header: from a series long gone
            else:
                out.extend(self.push(msg))
        return out

    def _pass_through(self, number: int, msg: Message) -> list[Message]:
        """A frame is released at once (the file records its number); only duplicates, and
        numbers older than the header, are dropped."""
        if number < self._expected or number in self._numbers:
            self.counts.duplicate += 1
            return []
        self._numbers.add(number)
        return [msg]

    def _skip_to(self, head: int) -> None:
        """Move past a gap: missing frames, unless the gap's frames went to other parts."""
        if not self.expect_gaps:
            refused = {n for n in self._rejected if n < head}
            self._rejected -= refused
            self.counts.missing += head - self._expected - len(refused)
        self._expected = head

    def _last_number(self) -> int:
        return max(self._numbers, default=self._expected - 1)

    def _release(self) -> list[Message]:
        out: list[Message] = []
        while self._heap and self._heap[0][0] == self._expected:
            number, _, msg = heapq.heappop(self._heap)
            self.held_bytes -= _held(msg)
            self._numbers.discard(number)
            self._expected += 1
            out.append(msg)
            if isinstance(msg, SeriesEnd):
                self._end_series()
                break
        if not self._heap:
            self._blocked_since = None
        elif out or self._blocked_since is None:
            self._blocked_since = self.clock()  # a new head of the line starts its wait now
        return out

    def _end_series(self) -> None:
        self.in_series = False
        self.counts.outside += len(self._heap)  # numbered after the end: not of this series
        self.held_bytes -= sum(_held(m) for _, _, m in self._heap)
        self._heap, self._numbers, self._rejected = [], set(), set()
        self._blocked_since = self._end_seen_at = None


def _held(msg: Message) -> int:
    return msg.nbytes_held if isinstance(msg, Image) else 0
