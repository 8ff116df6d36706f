"""ROI definitions (rois.py, the detectors.yaml key), the partial bitshuffle-LZ4 decode and the
counting itself, against numpy."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.codecs.bslz4_span import decode_span
from tango_receiver.config import ConfigError, parse_entry
from tango_receiver.detector import detector_for
from tango_receiver.engine import roi
from tango_receiver.engine.roi_file import write_rows
from tango_receiver.engine.stats import Stats
from tango_receiver.engine.writer import WriteFailed
from tango_receiver.rois import SpectrumWindow, parse_table, regions, table_json
from tango_receiver.tango.roi_attributes import roi_status

ENTRY = {"upstream": "tcp://127.0.0.1:9999", "write_roots": ["/tmp"]}


def test_a_table_of_rectangles_and_spectrum_windows():
    table = parse_table('{"peak": [1, 3, 2, 8], "fe_ka": {"channel": 2, "bins": [630, 660]}}')
    assert isinstance(table["fe_ka"], SpectrumWindow)
    assert [(r.name, r.rows, r.cols) for r in regions(table)] == [
        ("peak", (1, 3), (2, 8)),
        ("fe_ka", (2, 3), (630, 660)),
    ]
    assert table_json(table) == {"peak": [1, 3, 2, 8], "fe_ka": {"channel": 2, "bins": [630, 660]}}
    assert parse_table("") == parse_table({}) == {}
    assert parse_table({"b": [3, 1, 9, 2]})["b"] == [1, 3, 2, 9]  # a region either way round


@pytest.mark.parametrize(
    "bad, says",
    [
        ("{", "not JSON"),
        ('{"a": [0, 1, 0]}', "a"),
        ('{"1a": [0, 1, 0, 1]}', "1a"),
        ('{"a": [-1, 1, 0, 1]}', "a"),
        ("[1, 2]", "table"),
        ('{"a b": [0, 1, 0, 1]}', "a b"),
        ('{"a": {"channel": 0}}', "bins"),
    ],
)
def test_bad_definitions_are_refused_naming_what(bad, says):
    with pytest.raises(ValueError, match="ROI definitions") as info:
        parse_table(bad)
    assert says in str(info.value)


def test_the_detectors_yaml_key_checked_against_the_frame():
    config = parse_entry("r", ENTRY | {"rois": {"a": [0, 10, 0, 20]}, "shape": [10, 20]})
    assert regions(config.rois)[0].cols == (0, 20)
    as_property = parse_entry("r", ENTRY | {"rois": '{"a": [0, 10, 0, 20]}'})  # Tango: JSON
    assert as_property.rois == config.rois
    with pytest.raises(ConfigError, match="key 'rois'.*'a'.*outside the 10 x 20 frame"):
        parse_entry("r", ENTRY | {"rois": {"a": [0, 11, 0, 20]}, "shape": [10, 20]})
    with pytest.raises(ConfigError, match="rois"):
        parse_entry("r", ENTRY | {"rois": {"a": [0, 1]}})
    with pytest.raises(ConfigError, match="'e' rows 2:2 cols 0:5 is empty"):
        parse_entry("r", ENTRY | {"rois": {"e": [2, 2, 0, 5]}, "shape": [10, 20]})
    rotated = ENTRY | {"class": "Pilatus", "rotate": True, "shape": [10, 20]}
    parse_entry("r", rotated | {"rois": {"a": [0, 20, 0, 10]}})  # the stored, rotated frame
    spectra = ENTRY | {"class": "Xspress3", "shape": [4, 4096]}
    with pytest.raises(ConfigError, match="outside the 4 x 4096 frame"):
        parse_entry("r", spectra | {"rois": {"k": {"channel": 4, "bins": [0, 10]}}})


def test_the_tango_status_says_when_frames_were_not_counted():
    snap = replace(Stats().snapshot(), roi_skipped=7)
    assert "7 frames of the series stored but not counted" in roi_status(snap)
    assert roi_status(Stats().snapshot()) == ""


def test_decoders_keep_their_pixels_only_when_asked():
    detector = detector_for(parse_entry("r", ENTRY | {"class": "Pilatus"}))
    pixels = np.arange(64, dtype=np.int32).reshape(8, 8)
    assert detector.pixels_channel("data", pixels).pixels is None
    detector.keep_pixels = True
    channel = detector.pixels_channel("data", pixels)
    assert channel.pixels is pixels and channel.compression == "bslz4"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_span_decodes_exactly_those_elements(data):
    dtype = data.draw(st.sampled_from(["uint8", "uint16", "int32", "float32", "uint64"]))
    shape = data.draw(st.tuples(st.integers(1, 70), st.integers(1, 300)))
    flat = np.random.default_rng(data.draw(st.integers(0, 9))).poisson(2, shape).astype(dtype)
    size = flat.size
    start = data.draw(st.integers(0, size - 1))
    stop = data.draw(st.integers(start + 1, size))
    elements, first = decode_span(encode_chunk(flat), shape, dtype, start, stop)
    assert first <= start and first + elements.size >= stop
    np.testing.assert_array_equal(elements[start - first : stop - first], flat.ravel()[start:stop])


def test_a_span_of_a_truncated_chunk_is_refused():
    frame = np.random.default_rng(0).poisson(5, (200, 200)).astype(np.uint32)
    chunk = encode_chunk(frame)
    with pytest.raises(ValueError, match="truncated"):
        decode_span(chunk[: len(chunk) // 2], frame.shape, frame.dtype, 39000, 40000)
    assert decode_span(chunk[: len(chunk) // 2], frame.shape, frame.dtype, 0, 10)[0].size


def numpy_values(rois, frame):
    plane = frame.reshape(-1, frame.shape[-1])
    out = []
    for r in rois:
        region = plane[r.rows[0] : r.rows[1], r.cols[0] : r.cols[1]]
        out.append(
            (
                region.sum(dtype=np.float64),
                region.max() if region.size else 0,
                np.count_nonzero(region > 0),
            )
            if region.size
            else (0, 0, 0)
        )
    return np.array(out, dtype=np.float64)


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int32", "float32"])
@pytest.mark.parametrize("shape", [(300, 200), (3, 40, 60)])
def test_counts_from_pixels_and_from_chunks_agree_with_numpy(dtype, shape):
    frame = (np.random.default_rng(1).poisson(1.5, shape) - (1 if dtype[0] in "if" else 0)).astype(
        dtype
    )
    rois = regions(
        parse_table(
            {
                "a": [0, 10, 0, 10],
                "b": [50, 120, 30, 59],
                "out": [400, 500, 0, 10],
                "part": [100, 999, 190, 999],
            }
        )
    )
    want = numpy_values(rois, frame)
    from_pixels = roi.count(rois, roi.Plane(shape, np.dtype(dtype), frame))
    from_chunk = roi.count(rois, roi.Plane(shape, np.dtype(dtype), None, encode_chunk(frame)))
    np.testing.assert_array_equal(from_pixels, want)
    np.testing.assert_array_equal(from_chunk, want)


def test_rows_written_twice_land_where_they_belong(tmp_path):
    table = parse_table({"a": [0, 1, 0, 1], "s": {"channel": 0, "bins": [1, 2]}})
    values = np.arange(4 * 2 * 3, dtype=float).reshape(4, 2, 3)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        write_rows(f, table, np.arange(2), values[:2], 0)
        write_rows(f, table, np.arange(2, 4), values[2:], 2)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/roi_s/max"][()], values[:, 1, 1])
        assert list(f["/entry/roi_a/frame_number"][()]) == [0, 1, 2, 3]
        assert list(f["/entry/roi_s"].attrs["bins"]) == [1, 2]


def test_a_flush_writes_the_rows_counted_in_order_and_the_close_the_rest(tmp_path):
    """Rows are counted in any order; a flush writes the run of rows from the first that are
    counted or skipped, the close every row (NaN where not counted)."""
    stats = Stats()
    counter = roi.RoiCounter(parse_table({"a": [0, 1, 0, 1]}), stats, "t", cpu=1.0)
    counter.begin_series()  # starts the threads: none of this test's rows go through them
    series = counter.series
    row = series.reserve([10, 11, 12, 13])
    series.record(row + 1, np.ones((1, 3)))
    series.record(row, np.zeros((1, 3)))
    series.record(row + 3, None)  # skipped
    assert series.resolved() == 2
    with h5py.File(tmp_path / "f.h5", "w") as f:
        writer = SimpleNamespace(file=f, failed=False, flush_interval_s=1.0)
        counter.save(writer, now=5.0)
        assert list(f["/entry/roi_a/frame_number"][()]) == [10, 11]
        counter.save(writer, now=5.5)  # within the flush interval: nothing
        series.record(row + 2, np.full((1, 3), 2.0))
        assert series.resolved() == 4
        counter.save(writer, final=True)
        assert list(f["/entry/roi_a/frame_number"][()]) == [10, 11, 12, 13]
        np.testing.assert_array_equal(f["/entry/roi_a/sum"][()], [0, 1, 2, np.nan])
    counter.close()


def test_a_name_taken_in_the_file_is_a_write_failure_that_says_so(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["/entry/roi_a"] = 1  # a dataset where the group would go
        with pytest.raises(WriteFailed, match="writing ROI values failed"):
            write_rows(f, parse_table({"a": [0, 1, 0, 1]}), np.arange(1), np.zeros((1, 1, 3)), 0)
