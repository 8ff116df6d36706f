"""Live view: what is decoded, when, and in which thread."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.codecs.downsample import block_mean
from tango_receiver.engine import liveview
from tango_receiver.engine.liveview import LiveView
from tango_receiver.messages import Channel, Image
from tango_receiver.sim.frames import synthetic_frames

FRAMES = synthetic_frames(3, (64, 48), "uint32", rate=3.0, seed=1)


def image(number: int) -> Image:
    pixels = FRAMES[number % len(FRAMES)]
    return Image(
        msg_number=number + 1,
        frame=number,
        channels=[Channel("data", pixels.shape, "uint32", "bslz4", encode_chunk(pixels))],
    )


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def slowed_decodes(monkeypatch, seconds: float) -> list[Channel]:
    """Each decode takes ``seconds`` (a big frame, here); returns the planes decoded."""
    real, decoded = liveview.decode_plane, []

    def slow(channel):
        time.sleep(seconds)
        decoded.append(channel)
        return real(channel)

    monkeypatch.setattr(liveview, "decode_plane", slow)
    return decoded


def test_first_frame_of_each_series_is_decoded_before_anyone_asks(monkeypatch):
    decoded = []
    real = liveview.decode_plane
    monkeypatch.setattr(liveview, "decode_plane", lambda c: decoded.append(c) or real(c))
    view = LiveView()
    view.downsample = 2
    view.update(image(0), "series-1")
    wait_for(lambda: view.view(2) is not None)  # nothing to show until the decode ahead is done
    frame, planes = view.view(2)  # answered from what was decoded ahead: no decode here
    assert len(decoded) == 1 and frame.frame == 0
    np.testing.assert_array_equal(planes[0], block_mean(FRAMES[0], 2))

    view.update(image(1), "series-1")  # the same series: nothing decoded until asked
    time.sleep(0.3)
    assert len(decoded) == 1
    view.update(image(2), "series-2")
    wait_for(lambda: view.view(2)[0].frame == 2)
    time.sleep(0.2)
    assert len(decoded) == 2  # decoded ahead, and not again for the viewer


def test_a_newer_frame_is_decoded_once_for_the_binnings_asked_for(monkeypatch):
    decoded = []
    real = liveview.decode_plane
    monkeypatch.setattr(liveview, "decode_plane", lambda c: decoded.append(c) or real(c))
    view = LiveView()  # downsample 1: the first frame is decoded ahead at full resolution
    view.update(image(0), "series-1")
    wait_for(lambda: view.view(1) is not None)
    assert view.view(2)[0].frame == 0 and len(decoded) == 2  # a new binning: decoded here
    view.update(image(1), "series-1")
    wait_for(lambda: view.view(2)[0].frame == 1)  # refreshed in the background ...
    time.sleep(0.2)
    assert len(decoded) == 3  # ... once, and only at the binning asked for since
    np.testing.assert_array_equal(view.view(2)[1][0], block_mean(FRAMES[1], 2))


def test_a_failing_decode_does_not_end_live_view(monkeypatch, caplog):
    real = liveview.binned
    failures = [RuntimeError("a bug")]

    def binned_once_failing(plane, downsample):
        if failures:
            raise failures.pop()
        return real(plane, downsample)

    monkeypatch.setattr(liveview, "binned", binned_once_failing)
    view = LiveView()
    view.update(image(0), "series-1")  # decoded ahead: fails
    wait_for(lambda: "decoding frame 0 of series series-1 failed" in caplog.text)
    view.update(image(1), "series-2")  # the next series' first frame is shown
    wait_for(lambda: (v := view.view(1)) is not None and v[0].frame == 1)


@pytest.fixture
def roomy_wait(monkeypatch):
    """The viewer's wait five times the product's (30 ms): these tests time which frame a
    viewer gets against the wait, and on a loaded machine a thread's wake-up alone can take
    tens of ms. What they check scales with the wait."""
    monkeypatch.setattr(liveview, "FRESH_WAIT_S", 5 * liveview.FRESH_WAIT_S)


def test_a_frame_slower_to_decode_than_the_wait_is_answered_at_once_from_the_last(
    monkeypatch, roomy_wait
):
    slowed_decodes(monkeypatch, 3 * liveview.FRESH_WAIT_S)  # a 16M frame, here
    view = LiveView()
    view.update(image(0), "series-1")
    wait_for(lambda: view.view(1) is not None)  # the slow decode ahead, timed
    view.update(image(1), "series-1")
    start = time.monotonic()
    frame, planes = view.view(1)
    assert time.monotonic() - start < liveview.FRESH_WAIT_S  # not kept waiting ...
    assert frame.frame == 0  # ... for the decode of frame 1: shown frame 0, whole
    np.testing.assert_array_equal(planes[0], FRAMES[0])
    wait_for(lambda: view.view(1)[0].frame == 1)


def test_a_refresh_with_nothing_to_decode_does_not_make_the_decodes_look_fast(
    monkeypatch, roomy_wait
):
    """Viewers asking while a frame is decoded wake the refresher again once it is done, for
    nothing; the next viewer must still not wait for a decode longer than the wait."""
    monkeypatch.setattr(liveview, "REFRESH_SHARE", 0.5)  # a pause as long as the decode
    decode_s = 3 * liveview.FRESH_WAIT_S
    slowed_decodes(monkeypatch, decode_s)
    view = LiveView()
    view.update(image(0), "series-1")
    wait_for(lambda: view.view(1) is not None)  # the decode ahead, timed
    view.update(image(1), "series-1")
    wait_for(lambda: view.view(1)[0].frame == 1)  # asked for again and again while decoded
    time.sleep(3 * decode_s)  # the pause, then the refresh with nothing to do
    view.update(image(2), "series-1")
    start = time.monotonic()
    assert view.view(1)[0].frame == 1
    assert time.monotonic() - start < liveview.FRESH_WAIT_S


def test_a_frame_that_would_come_after_the_wait_is_answered_at_once(monkeypatch, roomy_wait):
    """The decode alone fits in the wait, but not after the pause that bounds the refresher's
    share of a core: waiting would only give the last frame, later. Once the pause is over,
    the newest frame is waited for (a client that reads the last frame after a series)."""
    monkeypatch.setattr(liveview, "REFRESH_SHARE", 0.05)  # room for a slow machine both ways
    decode_s = liveview.FRESH_WAIT_S / 6
    pause_s = decode_s * (1 / liveview.REFRESH_SHARE - 1)
    assert pause_s > 3 * liveview.FRESH_WAIT_S
    slowed_decodes(monkeypatch, decode_s)
    view = LiveView()
    view.update(image(0), "series-1")
    wait_for(lambda: view.view(1) is not None)  # the decode ahead, timed
    view.update(image(1), "series-1")
    start = time.monotonic()
    frame, _ = view.view(1)
    assert time.monotonic() - start < liveview.FRESH_WAIT_S and frame.frame == 0
    wait_for(lambda: view.view(1)[0].frame == 1)
    time.sleep(2 * pause_s)  # the refresher idle: what the polls above asked for is done
    view.update(image(2), "series-1")
    start = time.monotonic()
    assert view.view(1)[0].frame == 2  # waited for, as the decode fits in the wait
    assert time.monotonic() - start < liveview.FRESH_WAIT_S


def test_decodes_take_their_share_of_a_core_however_fast_viewers_poll(monkeypatch):
    decode_s, polled_s = 0.02, 1.0
    decoded = slowed_decodes(monkeypatch, decode_s)
    view = LiveView()
    number, deadline = 0, time.monotonic() + polled_s
    while time.monotonic() < deadline:  # a new frame and a viewer every millisecond
        view.update(image(number), "series-1")
        view.view(1)
        number += 1
        time.sleep(0.001)
    # one refresh per decode_s / REFRESH_SHARE (0.2 s), the decode ahead and the one running
    assert 2 <= len(decoded) <= polled_s * liveview.REFRESH_SHARE / decode_s + 2
