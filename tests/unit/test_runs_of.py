"""``runs_of``: what the ordering lets go at once, consecutive frames of one form as runs."""

from __future__ import annotations

import numpy as np

from tango_receiver.messages import Channel, FrameRun, Header, Image, SeriesEnd, runs_of


def image(
    number: int,
    frame: int | None = None,
    shape: tuple[int, ...] = (4, 4),
    compression: str = "bslz4",
    wire: bool = False,
    channels: int = 1,
) -> Image:
    frame = number - 1 if frame is None else frame
    blob = bytes([number % 256]) * 20
    return Image(
        number,
        frame,
        [
            Channel("data" if i == 0 else f"c{i}", shape, "uint16", compression, blob)
            for i in range(channels)
        ],
        wire=[b"head%d" % number, blob] if wire else None,
        nbytes_wire=25,
    )


def test_consecutive_frames_of_one_form_become_one_ordered_run():
    images = [image(n, frame=n + 99, wire=True) for n in range(5, 9)]
    (run,) = runs_of(images)
    assert isinstance(run, FrameRun) and run.ordered and len(run) == 4
    assert (run.first, run.msg_number, run.shape, run.dtype) == (104, 5, (4, 4), "uint16")
    assert run.chunks == [i.channels[0].blob for i in images] and run.wires == [25] * 4
    assert [run.image(i).to_wire() for i in range(4)] == [i.wire for i in images]


def test_anything_else_breaks_a_run_and_keeps_its_place():
    header, end = Header(0), SeriesEnd(20)
    messages = [
        header,
        image(1),
        image(2),
        image(4),
        image(5, frame=7),
        image(6, frame=8),
        image(7, shape=(2, 8)),
        image(8, shape=(2, 8), compression="none"),
        image(9, channels=2),
        image(10, wire=True),
        image(11),
        end,
    ]
    out = runs_of(messages)
    kinds = [
        (type(m).__name__, m.msg_number, len(m) if isinstance(m, FrameRun) else 1) for m in out
    ]
    assert kinds == [
        ("Header", 0, 1),
        ("FrameRun", 1, 2),
        ("Image", 4, 1),
        ("FrameRun", 5, 2),
        ("Image", 7, 1),
        ("Image", 8, 1),
        ("Image", 9, 1),
        ("Image", 10, 1),
        ("Image", 11, 1),
        ("SeriesEnd", 20, 1),
    ]
    assert runs_of([]) == [] and runs_of([image(3)]) == [image(3)]


def test_an_image_that_carries_more_than_its_chunk_stays_an_image():
    """A run keeps only chunks: what a frame says besides (discard, what it tells of the series,
    its times, pixels kept for ROI counting) would be lost in one."""
    discarded, described, timed, counted = (image(n) for n in (2, 4, 6, 8))
    discarded.discard = True
    described.describe = dict
    timed.times = (0.0, 1.0, 1.0)
    counted.channels[0].pixels = np.zeros((4, 4), np.uint16)
    for special in (discarded, described, timed, counted):
        n = special.msg_number
        out = runs_of([image(n - 1), special, image(n + 1)])
        assert [type(m).__name__ for m in out] == ["Image"] * 3, special
