"""The rules by which the Sardana controller judges a point (tango_receiver/sardana/points.py),
and the recorder's reference form, without a Pool."""

from __future__ import annotations

import pytest

from tango_receiver.sardana.points import FrameRange, Point, PointFault, Progress

FILE = "/data/scan_001.h5"
DSET = "/entry/instrument/detector/data"


def progress(
    count: int, done: int, written: int, filename: str = FILE, fault: str = ""
) -> Progress:
    return Progress(count, done, written, filename, fault)


def test_one_series_for_the_scan_a_point_is_the_next_rows():
    point = Point(3, progress(1, 0, 6))  # series 1 open, 6 frames written before this point
    assert not point.done(progress(1, 0, 8))
    assert point.done(progress(1, 0, 9))
    assert str(point.reference(progress(1, 0, 9), DSET)) == (
        "h5file:///data/scan_001.h5::entry/instrument/detector/data[6:9]"
    )


def test_one_series_per_point_waits_for_its_header_then_counts_from_zero():
    point = Point(2, progress(4, 4, 2, "/data/point_3.h5"))  # the last point's series ended
    assert not point.done(progress(4, 4, 2, "/data/point_3.h5"))  # no new header yet
    assert not point.done(progress(5, 4, 1, "/data/point_4.h5"))
    assert point.done(progress(5, 4, 2, "/data/point_4.h5"))
    assert point.reference(progress(5, 4, 2, "/data/point_4.h5"), DSET) == FrameRange(
        "/data/point_4.h5", "entry/instrument/detector/data", 0, 2
    )


def test_done_at_the_last_frame_written_not_at_the_series_end():
    point = Point(2, progress(1, 0, 0))
    assert point.done(progress(1, 0, 2))  # series still open
    assert point.done(progress(1, 1, 5))  # later frames do not move the point's rows
    assert point.reference(progress(1, 1, 5), DSET).stop == 2


@pytest.mark.parametrize(
    "now, reason",
    [
        (progress(1, 0, 1, fault="disk full"), "disk full"),
        (progress(1, 1, 1), "series ended after 1 of the point's 2 frames"),
        (progress(3, 2, 2), "2 series began during one point"),
    ],
)
def test_a_point_that_will_never_be_written_is_a_fault_with_the_reason(now, reason):
    with pytest.raises(PointFault, match=reason):
        Point(2, progress(1, 0, 0)).done(now)


def test_frames_into_no_file_have_no_reference():
    point = Point(1, progress(0, 0, 0))
    now = progress(1, 0, 1, filename="")
    assert point.done(now)
    with pytest.raises(PointFault, match="no file"):
        point.reference(now, DSET)


@pytest.mark.parametrize(
    "reference",
    [
        "h5file:///data/scan.h5::entry/instrument/detector/data",  # Sardana's whole-dataset form
        "h5file:///data/scan.h5::/entry/data[0:2]",  # a leading slash: not Sardana's form
        "h5file://data/scan.h5::entry/data[0:2]",  # relative file
        "h5file:///data/scan.h5::entry/data[3:2]",
        "file:///data/scan.h5::entry/data[0:2]",
    ],
)
def test_only_frame_ranges_are_parsed(reference):
    assert FrameRange.parse(reference) is None


def test_a_frame_range_parses_back():
    rows = FrameRange("/data/a b.h5", "entry/instrument/eiger/data", 10, 15)
    assert FrameRange.parse(str(rows)) == rows
