"""msg_number ordering: reorder, gap timeout, duplicates, frames outside a series."""

from __future__ import annotations

import random

from tango_receiver.engine.ordering import END_GRACE_S, Ordering
from tango_receiver.messages import Channel, Header, Image, SeriesEnd


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def image(n: int) -> Image:
    return Image(msg_number=n, frame=n - 1, channels=[Channel("data", (1,), "uint8", "none", b"x")])


def numbers(msgs) -> list:
    return [m.msg_number for m in msgs]


def test_shuffled_series_comes_out_in_order():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    msgs = [image(n) for n in range(1, 101)] + [SeriesEnd(101)]
    random.Random(4).shuffle(msgs)
    out = order.push(Header(0))
    for m in msgs:
        out += order.push(m)
    assert numbers(out) == list(range(102))
    assert not order.in_series and order.pending == 0
    assert (order.counts.missing, order.counts.duplicate, order.counts.outside) == (0, 0, 0)


def test_gap_is_skipped_after_the_timeout_and_counted():
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    out = order.push(Header(0)) + order.push(image(1)) + order.push(image(3)) + order.push(image(4))
    assert numbers(out) == [0, 1]
    clock.now = 0.9
    assert order.poll() == []  # still waiting for 2
    clock.now = 1.1
    assert numbers(order.poll()) == [3, 4]
    assert order.counts.missing == 1
    assert numbers(order.push(image(2))) == []  # too late now: counted, never written twice
    assert order.counts.duplicate == 1


def test_series_end_with_a_gap_waits_only_a_short_grace():
    clock = Clock()
    order = Ordering(gap_timeout_s=10.0, clock=clock)
    order.push(Header(0))
    order.push(image(1))
    assert order.push(image(3)) == []
    assert order.push(SeriesEnd(4)) == []
    clock.now = END_GRACE_S + 0.01
    assert numbers(order.poll()) == [3, 4]
    assert order.counts.missing == 1 and not order.in_series


def test_duplicates_are_counted_and_dropped():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    out = order.push(Header(0)) + order.push(image(1)) + order.push(image(1))
    out += order.push(image(3)) + order.push(image(3)) + order.push(image(2))
    assert numbers(out) == [0, 1, 2, 3]
    assert order.counts.duplicate == 2


def test_images_before_their_header_are_kept_and_strays_are_counted():
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    assert order.push(image(2)) == []  # overtook its header through another worker
    out = order.push(Header(0)) + order.push(image(1))
    assert numbers(out) == [0, 1, 2]
    order.push(SeriesEnd(3))
    assert order.push(image(7)) == []  # no series open
    clock.now = 2.0
    order.poll()
    assert order.counts.outside == 1


def test_unnumbered_end_is_placed_after_the_announced_images():
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    order.push(Header(0, nimages=3))
    out = order.push(image(1)) + order.push(SeriesEnd(None)) + order.push(image(3))
    out += order.push(image(2))
    assert numbers(out) == [1, 2, 3, 4]
    assert isinstance(out[-1], SeriesEnd)


def test_new_header_flushes_the_open_series():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    order.push(Header(0))
    order.push(image(1))
    order.push(image(3))
    out = order.push(Header(0, filename="/next.h5"))
    assert numbers(out) == [3, 0]
    assert order.counts.missing == 1 and order.in_series


def test_unnumbered_end_after_more_images_than_announced():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    order.push(Header(0, nimages=1))
    out = order.push(image(1)) + order.push(image(2)) + order.push(SeriesEnd(None))
    assert numbers(out) == [1, 2, 3] and not order.in_series
    assert order.counts.duplicate == 0


def test_a_refused_message_is_not_counted_missing_as_well():
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    out = order.push(Header(0)) + order.push(image(1))
    order.reject(2)  # undecodable, counted invalid by the engine
    order.reject(4)
    out += order.push(image(5)) + order.push(SeriesEnd(6))
    assert numbers(out) == [0, 1]
    clock.now = 1.1
    out = order.poll()  # 2 refused, 3 missing, 4 refused
    assert numbers(out) == [5, 6] and not order.in_series
    assert order.counts.missing == 1


def test_a_valid_message_after_a_refused_one_of_its_number_is_written():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    order.push(Header(0))
    order.reject(1)
    assert numbers(order.push(image(1)) + order.push(SeriesEnd(2))) == [1, 2]
    assert (order.counts.missing, order.counts.duplicate) == (0, 0)


def test_refused_numbers_are_forgotten_with_their_series():
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    order.push(Header(0))
    order.reject(2)
    order.push(Header(0))  # the detector restarted: 2 belongs to the old series
    order.push(image(1))
    order.push(image(3))
    clock.now = 1.1
    assert numbers(order.poll()) == [3]
    assert order.counts.missing == 1


def test_a_run_is_taken_whole_only_when_it_is_exactly_what_comes_next():
    order = Ordering(gap_timeout_s=1.0, clock=Clock())
    assert not order.take_run(1, 5)  # no series yet: its frames must wait for a header
    order.push(Header(0))
    assert not order.take_run(2, 5)  # a gap before it
    assert order.take_run(1, 5)
    assert numbers(order.push(image(6))) == [6]  # the series goes on after the run
    order.push(image(8))  # 7 is missing: 8 waits
    assert not order.take_run(9, 3) and order.pending == 1
    assert numbers(order.push(image(7))) == [7, 8]
    assert order.take_run(9, 3)
    assert numbers(order.push(SeriesEnd(None))) == [12]  # placed after the run's last frame
    split = Ordering(gap_timeout_s=1.0, clock=Clock(), expect_gaps=True)
    split.push(Header(0))
    assert not split.take_run(1, 5)  # a part of a split stream records every number itself


def test_held_bytes_count_every_image_held_until_it_leaves():
    """The receiver's byte budget counts what the ordering holds (engine/budget.py): each way out
    (released, dropped after the end, expired before a header, flushed) gives its bytes back."""
    clock = Clock()
    order = Ordering(gap_timeout_s=1.0, clock=clock)
    order.push(image(5))  # before any header
    assert order.held_bytes == 1 and order.waits_for is None
    order.push(Header(0))  # claims it: held now for 1..4
    order.push(image(3))
    assert order.held_bytes == 2 and order.waits_for == 1
    assert numbers(order.push(image(1))) == [1]
    assert order.held_bytes == 2 and order.waits_for == 2
    assert numbers(order.push(image(2))) == [2, 3]
    assert order.held_bytes == 1 and order.waits_for == 4
    order.push(image(7))
    assert numbers(order.push(SeriesEnd(6))) == []
    clock.now = END_GRACE_S + 0.01
    assert numbers(order.poll()) == [5, 6]  # 4 missing; 7 is after the end
    assert order.held_bytes == 0 and order.waits_for is None
    order.push(image(12))  # a stray: no header claims it
    clock.now += 1.1
    order.poll()
    assert order.held_bytes == 0
    order.push(Header(20))
    order.push(image(23))
    assert order.held_bytes == 1
    assert numbers(order.flush()) == [23]
    assert order.held_bytes == 0


def test_patience_is_the_gap_timeout_and_the_short_grace_once_the_end_came():
    """What the receiver's byte budget looks at to let every batch through
    (``receiver._must_pass_budget``) and ``poll`` to give a gap up: the same clock."""
    clock = Clock()
    order = Ordering(gap_timeout_s=2.0, clock=clock)
    order.push(Header(0))
    assert order.patience_used() == 0  # nothing held
    order.push(image(2))
    clock.now = 1.0
    assert order.patience_used() == 0.5 and order.poll() == []
    order.push(SeriesEnd(3))  # stragglers now get END_GRACE_S, counted from the same start
    assert order.patience_used() == 1.0 / END_GRACE_S
    assert numbers(order.poll()) == [2, 3] and order.patience_used() == 0
