"""What generic Tango clients (Taurus panels, forms, plain proxies) get from the device: image
attributes that cannot stall them, Status and counters that read well, and what survives Init.
A DeviceTestContext in its own process over a real receiver, as in test_tango_device.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from tango import DevState, DispLevel, EventType
from taurus.core.units import UR
from test_tango_device import decode_video, device, send_in_background

from conftest import wait_for
from tango_receiver.codecs.downsample import block_mean
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.tango.device import (
    COUNTERS,
    IMAGE_EVENT_PERIOD_S,
    MAX_IMAGE_DIM,
    converted,
)
from tango_servers import Events, entry

SHAPE = (2100, 1000)  # taller than MAX_IMAGE_DIM: binned by 3 whatever downsample says
FIRST_LINE_MAX = 60


def properties(sender, root, **extra) -> dict:
    props = entry(sender, root) | extra
    props["detector_class"] = props.pop("class")
    return props


def test_image_attributes_are_expert_bounded_typed_and_pushed_at_a_bounded_rate(tmp_path, sender):
    frames = synthetic_frames(3, SHAPE, "uint16", rate=3.0)
    count = 60
    with device(properties(sender, tmp_path, dtype="uint16", video_image=True)) as proxy:
        for name in ("last_image", "video_last_image"):
            assert proxy.get_attribute_config(name).disp_level == DispLevel.EXPERT
        recorders = {name: Events() for name in ("last_image", "video_last_image", "Status")}
        ids = [
            proxy.subscribe_event(name, EventType.CHANGE_EVENT, recorder)
            for name, recorder in recorders.items()
        ]
        try:
            start = time.monotonic()
            thread = send_in_background(sender, internal_series(frames, count=count), rate=40)
            thread.join(30)
            wait_for(
                lambda: proxy.state() == DevState.ON and proxy.frames_received == count,
                20,
                "the series received",
            )
            last = frames[(count - 1) % len(frames)]
            expected = converted(block_mean(last, 3), np.dtype(np.uint16))
            wait_for(
                lambda: (
                    len(recorders["last_image"].values) > 1
                    and np.array_equal(recorders["last_image"].values[-1], expected)
                ),
                10,
                "a change event with the last frame",
            )
            wait_for(
                lambda: recorders["Status"].values[-1].startswith("ON"),
                5,
                "the Status event after the series",
            )
            elapsed = time.monotonic() - start
        finally:
            for event_id in ids:
                proxy.unsubscribe_event(event_id)

        image = proxy.last_image
        assert image.dtype == np.uint16 and image.shape == (700, 333)
        assert max(image.shape) <= MAX_IMAGE_DIM and np.array_equal(image, expected)
        header, video = decode_video(proxy.video_last_image)
        assert video.shape == (700, 333) and header[4:6] == (333, 700)
        assert np.array_equal(video, last[:2100, :999].reshape(700, 3, 333, 3).sum(axis=(1, 3)))

        for name in ("last_image", "video_last_image"):
            pushed = recorders[name].values
            assert not recorders[name].errors
            # the first event is the value at subscription time
            assert 2 <= len(pushed) <= elapsed / IMAGE_EVENT_PERIOD_S + 3, (name, len(pushed))
        statuses = recorders["Status"].values
        assert not recorders["Status"].errors and len(set(statuses)) >= 3
        assert any(s.startswith("RUNNING") for s in statuses)
        assert statuses[-1] == proxy.status() and f"{count} frames" in statuses[-1]
        assert all(len(s.splitlines()[0]) <= FIRST_LINE_MAX for s in statuses), statuses


def test_units_formats_and_the_downsample_write_value_read_well(tmp_path, sender):
    with device(properties(sender, tmp_path)) as proxy:
        assert "video_last_image" not in proxy.get_attribute_list()  # not unless asked for
        configs = {c.name: c for c in proxy.get_attribute_config(proxy.get_attribute_list())}
        for config in configs.values():
            unit = "" if config.unit in ("", "No unit") else config.unit
            UR.parse_units(unit)  # what Taurus does: an unknown unit is a warning on every read
        assert all(configs[name].unit in ("", "No unit") for name in COUNTERS)
        assert (configs["frame_rate"].unit, configs["frame_rate"].format) == ("Hz", "%.1f")
        assert (configs["data_rate"].unit, configs["data_rate"].format) == ("MB/s", "%.1f")
        assert "{:~.1f}".format(UR.Quantity(6.863196181, "MB/s")) == "6.9 MB / s"

        downsample = proxy.read_attribute("downsample")
        assert downsample.value == downsample.w_value == 1  # a form's write field shows 1

        assert proxy.status().splitlines()[0] == "ON: no series yet"


@pytest.mark.parametrize(
    "dtype, published",
    [("int32", np.int32), ("float32", np.float32), ("int8", np.int16), ("float16", np.float32)],
)
def test_last_image_is_published_in_the_frames_dtype(tmp_path, sender, dtype, published):
    frame = synthetic_frames(1, (16, 24), dtype, rate=3.0)[0]
    with device(properties(sender, tmp_path, dtype=dtype)) as proxy:
        sender.send(internal_series([frame], count=2, compression="none"))
        wait_for(
            lambda: proxy.frames_received == 2 and proxy.state() == DevState.ON,
            20,
            "the series received",
        )
        image = proxy.last_image
        assert image.dtype == published and np.array_equal(image, frame)
