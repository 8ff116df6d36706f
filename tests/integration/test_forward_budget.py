"""The secondary port holds what its byte budget allows of the frames actually queued, not a
message count taken from the shape the entry declares (issue #22)."""

from __future__ import annotations

import json
import threading

import zmq

from conftest import make_config, wait_for, wait_series_done
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series


def test_a_draining_consumer_gets_every_frame_of_a_burst_after_a_gap(tmp_path, sender):
    """The entry declares 2160 x 2560 uint16 (11 MB a frame: a count from it would be 11
    messages); 217 x 301 frames come, and a gap holds them for the gap timeout, then lets them
    go at once: a consumer that keeps up on average, with little buffer of its own, takes all."""
    frames = synthetic_frames(4, (217, 301), "uint16", rate=50.0)
    messages = list(
        internal_series(frames, str(tmp_path / "burst.h5"), compression="none", count=301)
    )
    del messages[11]  # msg_number 11 never comes: the ordering holds the rest for 1 s
    receiver = Receiver(
        make_config(sender.port, tmp_path, shape=[2160, 2560], dtype="uint16", gap_timeout_s=1.0)
    )
    receiver.open()
    ctx = zmq.Context()
    consumer = ctx.socket(zmq.PULL)
    consumer.setsockopt(zmq.RCVHWM, 2)
    consumer.connect(f"tcp://127.0.0.1:{receiver.secondary_port}")
    images: list[int] = []

    def drain() -> None:
        while True:
            head = json.loads(consumer.recv_multipart()[0])
            if head["htype"] == "series_end":
                return
            if head["htype"] == "image":
                images.append(head["msg_number"])

    thread = threading.Thread(target=drain, daemon=True)
    try:
        wait_for(lambda: receiver.snapshot().consumers == 1, what="the consumer to connect")
        thread.start()
        receiver.start()
        sender.send(messages, rate=250.0)  # 1 s of hold: about 250 frames, 33 MB, at once
        snap = wait_series_done(receiver)
        thread.join(10)
    finally:
        receiver.close()
        consumer.close(linger=0)
        ctx.term()
    assert (snap.frames_written, snap.frames_missing) == (300, 1)
    assert snap.forward_dropped == snap.forward_no_consumer == 0
    assert images == [n for n in range(1, 302) if n != 11]
