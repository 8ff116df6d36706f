"""The byte budget between decoder workers and the engine: bounded, and never a deadlock."""

from __future__ import annotations

import threading

from tango_receiver.engine.budget import ByteBudget


def test_a_worker_waits_while_the_budget_is_spent():
    budget = ByteBudget(100)
    assert budget.take(60, 0.01)
    assert not budget.take(60, 0.05)  # 120 > 100: waits, times out
    taken = threading.Event()
    thread = threading.Thread(target=lambda: budget.take(60, 5) and taken.set())
    thread.start()
    assert not taken.wait(0.1)
    budget.give(60)  # the engine handled the first batch
    assert taken.wait(5)
    thread.join()


def test_a_batch_larger_than_the_budget_passes_alone():
    budget = ByteBudget(100)
    assert budget.take(500, 0.01)  # one raw 16M frame is bigger than any budget: it still goes
    assert not budget.take(1, 0.01)
    budget.give(500)
    assert budget.take(1, 0.01)


def test_a_needed_batch_and_a_batch_without_frames_pass_a_spent_budget():
    budget = ByteBudget(100)
    assert budget.take(90, 0.01)
    assert not budget.take(50, 0.05)
    assert budget.take(0, 0.01)  # a header: no frame, no cost
    assert budget.take(50, 0.01, needed=lambda: True)  # the ordering waits for a frame in it
