"""The bench's and the soak's slow secondary consumer reads at the pace it is given."""

from __future__ import annotations

import threading
import time

import zmq

from tango_receiver.sim.consumer import CATCH_UP_S, drain

DELAY_S = 0.005


def test_the_slow_consumer_keeps_its_pace_however_much_is_waiting():
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)  # everything queued at once: the consumer sets the pace
    port = push.bind_to_random_port("tcp://127.0.0.1")
    stop, taken = threading.Event(), []
    start = time.monotonic()
    consumer = threading.Thread(target=lambda: taken.append(drain(port, DELAY_S, stop)))
    consumer.start()
    for _ in range(2000):
        push.send(b"x" * 1000)
    time.sleep(0.5)
    stop.set()
    consumer.join(5)
    elapsed = time.monotonic() - start
    push.close(linger=0)
    ctx.term()
    # never faster than asked (a head start of CATCH_UP_S at most) ...
    assert taken[0] <= (elapsed + CATCH_UP_S) / DELAY_S + 1
    # ... and not far slower, even on a busy machine
    assert taken[0] >= 0.5 * 0.5 / DELAY_S
