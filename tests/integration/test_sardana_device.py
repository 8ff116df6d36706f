"""What the receiver's Tango device gives a Sardana controller: where frames go (``dset_name``,
the frame's shape and type) and a series-done counter with change events."""

from __future__ import annotations

import threading

import tango
from tango import EventType
from test_tango_device import device, entry, send_watching_states

from conftest import wait_for
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series


def test_series_done_counts_ended_series_with_change_events(tmp_path, sender):
    properties = entry(sender, tmp_path) | {"shape": [8, 6], "dtype": "uint32"}
    properties["detector_class"] = properties.pop("class")
    seen: list[int] = []
    lock = threading.Lock()

    def pushed(event: tango.EventData) -> None:
        if not event.err:
            with lock:
                seen.append(event.attr_value.value)

    with device(properties) as proxy:
        # before any frame: the entry's shape and type
        assert (list(proxy.frame_shape), proxy.frame_dtype) == ([8, 6], "uint32")
        assert proxy.dset_name == "/entry/instrument/detector/data"
        event_id = proxy.subscribe_event("series_done", EventType.CHANGE_EVENT, pushed)
        try:
            frames = synthetic_frames(2, (12, 10), "uint16")
            for number in (1, 2):
                target = tmp_path / f"series_{number}.h5"
                send_watching_states(proxy, sender, internal_series(frames, str(target)), 50, 2)
                wait_for(lambda n=number: seen[-1:] == [n], 10, f"series_done event {number}")
        finally:
            proxy.unsubscribe_event(event_id)
        # after frames: what was stored
        assert (list(proxy.frame_shape), proxy.frame_dtype) == ([12, 10], "uint16")
    # the value at subscription may come twice (the device's first push can follow it)
    assert [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]] == [0, 1, 2]
