"""The rules by which the Sardana controllers judge a point (tango_receiver/sardana/points.py):
when its frames are written, where they are, when their ROI values are final and what they sum
to; and the recorder's reference form. Without a Pool."""

from __future__ import annotations

import numpy as np
import pytest

from tango_receiver.sardana.points import FrameRange, Point, PointFault, Progress, RoiRows

FILE = "/data/scan_001.h5"
DSET = "/entry/instrument/detector/data"


def progress(
    count: int,
    done: int,
    written: int,
    filename: str = FILE,
    fault: str = "",
    roi_series: int = 0,
    roi_resolved: int = 0,
) -> Progress:
    return Progress(count, done, written, filename, fault, roi_series, roi_resolved)


def rows_of(series: int, sums: list[list[float]], window: int = 1 << 20) -> RoiRows:
    return RoiRows(series, ("peak", "band"), np.array(sums, float), window)


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


def test_roi_values_wait_for_the_counting_that_lags_the_write():
    point = Point(2, progress(1, 0, 1, roi_series=1, roi_resolved=1))  # rows 1, 2
    assert not point.counted(progress(1, 0, 2, roi_series=1, roi_resolved=2))  # row 2 counting
    assert not point.counted(progress(1, 0, 3, roi_series=1, roi_resolved=1))  # written: not yet
    assert point.counted(progress(1, 0, 3, roi_series=1, roi_resolved=3))


def test_a_point_sums_its_own_rows_per_roi():
    point = Point(2, progress(1, 0, 1))
    now = progress(1, 0, 3, roi_series=1, roi_resolved=3)
    read = rows_of(1, [[1, 10], [2, 20], [4, 40], [8, np.nan]])  # row 3: the next point's
    assert point.roi_sums(now, read) == {"peak": 6, "band": 60}


def test_one_series_per_point_sums_from_row_zero():
    point = Point(2, progress(4, 4, 2))
    now = progress(5, 4, 2, roi_series=5, roi_resolved=2)
    assert point.counted(now)
    assert point.roi_sums(now, rows_of(5, [[3, 1], [5, 1]])) == {"peak": 8, "band": 2}


def test_a_frame_not_counted_is_a_fault_never_a_sum_without_it():
    point = Point(3, progress(1, 0, 0))
    now = progress(1, 0, 3, roi_series=1, roi_resolved=3)
    with pytest.raises(PointFault, match="1 of the point's 3 frames not ROI-counted"):
        point.roi_sums(now, rows_of(1, [[1, 1], [np.nan, np.nan], [1, 1]]))


@pytest.mark.parametrize(
    "now, reason",
    [
        (progress(2, 1, 1, roi_series=0), "series 2 counts no ROIs"),
        (progress(2, 1, 1, roi_series=3, roi_resolved=1), "series 3 began"),
        (progress(2, 2, 0, roi_series=2), "series ended after 0 of the point's 1 frames"),
    ],
)
def test_roi_values_that_will_never_be_final_are_a_fault(now, reason):
    with pytest.raises(PointFault, match=reason):
        Point(1, progress(1, 1, 4)).counted(now)


@pytest.mark.parametrize(
    "read, reason",
    [
        (rows_of(3, [[1, 1]]), "series 3 began before"),  # read after a new series began
        (rows_of(2, [[1, 1]] * 4, window=4), "more images than roi_sums holds"),
    ],
)
def test_rows_of_another_series_or_cut_off_are_a_fault(read, reason):
    with pytest.raises(PointFault, match=reason):
        Point(1, progress(1, 1, 4)).roi_sums(progress(2, 1, 1, roi_series=2, roi_resolved=1), read)
