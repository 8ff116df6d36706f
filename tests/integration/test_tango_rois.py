"""The ROI attributes and commands of the Tango device (tango/roi_attributes.py) over a real
receiver in DeviceTestContext: definitions from a property, SetRois, values and change events."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tango
from tango import EventType
from test_rois import expected
from test_tango_device import device, entry, send_in_background
from test_tango_integration import Events

from conftest import wait_for
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series

COUNT = 20


def test_rois_as_attributes_events_and_commands(tmp_path, sender):
    table = {"a": [0, 10, 0, 10], "k": {"channel": 3, "bins": [5, 40]}}
    frames = synthetic_frames(4, (48, 40), "uint32", rate=3.0)
    properties = entry(sender, tmp_path) | {"rois": json.dumps(table)}
    properties["upstream"] = properties["upstream"][0]
    with device(properties) as proxy:
        assert json.loads(proxy.roi_definitions) == table
        assert proxy.roi_frame == -1 and list(proxy.roi_names or []) == []
        assert (proxy.roi_series, proxy.roi_resolved) == (0, 0)
        events = Events()
        event_id = proxy.subscribe_event("roi_sum", EventType.CHANGE_EVENT, events)
        try:
            thread = send_in_background(
                sender, internal_series(frames, str(tmp_path / "t.h5"), count=COUNT), rate=50
            )
            want = expected(table, frames, COUNT)
            wait_for(
                lambda: not thread.is_alive() and proxy.roi_frame == COUNT - 1,
                20,
                "the last frame counted",
            )
            wait_for(
                lambda: events.items and list(events.items[-1][1]) == list(want[-1, :, 0]),
                10,
                "the last roi_sum event",
            )
        finally:
            proxy.unsubscribe_event(event_id)
        assert not events.errors and len(events.items) > 2  # values moved during the series
        assert list(proxy.roi_names) == ["a", "k"]
        np.testing.assert_array_equal(proxy.roi_sum, want[-1, :, 0])
        np.testing.assert_array_equal(proxy.roi_max, want[-1, :, 1])
        np.testing.assert_array_equal(proxy.roi_count, want[-1, :, 2])
        assert proxy.roi_skipped == 0
        np.testing.assert_array_equal(proxy.roi_sums, want[:, :, 0])
        # read in one request: the series the counters count, every row final
        count, series, resolved = proxy.read_attributes(
            ["series_count", "roi_series", "roi_resolved"]
        )
        assert (series.value, resolved.value) == (count.value, COUNT)
        np.testing.assert_array_equal(proxy.RoiSums("k"), want[:, 1, 0])

        proxy.SetRois('{"b": [1, 2, 3, 4]}')
        assert json.loads(proxy.roi_definitions) == {"b": [1, 2, 3, 4]}
        assert list(proxy.roi_names) == ["a", "k"]  # the last series keeps its own
        with pytest.raises(tango.DevFailed, match="ROI definitions"):
            proxy.SetRois('{"b": [2, 1, 3]}')
        with pytest.raises(tango.DevFailed, match="no ROI 'b'"):
            proxy.RoiSums("b")
        assert json.loads(proxy.roi_definitions) == {"b": [1, 2, 3, 4]}
