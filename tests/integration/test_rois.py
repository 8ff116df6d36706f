"""ROI counting end to end: every detector class's frames through a real socket, the values
checked against numpy on the frames sent, read back from the file's NXdata groups, served by
REST; a change of definitions during a series, and counting that falls behind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from test_api import serving

from conftest import make_config, run_series, wait_for, wait_series_done
from tango_receiver.engine import roi
from tango_receiver.engine.receiver import Receiver
from tango_receiver.rois import frame_plane, parse_table, regions
from tango_receiver.sim.eiger_v1 import eiger_v1_series
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.lambda_ import ModuleSenders, lambda_series
from tango_receiver.sim.orca import orca_series
from tango_receiver.sim.pilatus import pilatus_series
from tango_receiver.sim.stream_v2 import stream_v2_series
from tango_receiver.sim.xspress3 import xspress3_series

COUNT = 12
#: a series sent at once is counted whole only with the cores for it (the default, a tenth of
#: one, skips what a burst brings beyond 10 ms of counting)
EVERY_FRAME = {"roi_cpu": 2}
RECTANGLES = {"corner": [0, 10, 0, 10], "middle": [5, 30, 20, 47], "edge": [30, 99, 40, 99]}


def expected(table: dict, frames: list[np.ndarray], count: int = COUNT) -> np.ndarray:
    """[image, roi, sum/max/count] from the frames sent (cycled, as the simulators do)."""
    out = np.zeros((count, len(table), 3))
    for i in range(count):
        frame = frames[i % len(frames)]
        plane = frame.reshape(frame_plane(frame.shape))
        for j, r in enumerate(regions(parse_table(table))):
            region = plane[r.rows[0] : r.rows[1], r.cols[0] : r.cols[1]]
            out[i, j] = (region.sum(dtype=np.float64), region.max(), np.count_nonzero(region > 0))
    return out


@dataclass
class Case:
    """One detector class: its frames, the messages that carry them, the entry's extra keys."""

    cls: str
    frames: list[np.ndarray]
    messages: Callable[[list[np.ndarray], str], Any]
    rois: dict = field(default_factory=lambda: RECTANGLES)
    extra: dict = field(default_factory=dict)


def frames_2d(dtype: str = "uint16", shape=(40, 50), rate: float = 3.0) -> list[np.ndarray]:
    return synthetic_frames(4, shape, dtype, rate=rate, seed=5)


def pilatus_frames() -> list[np.ndarray]:
    frames = frames_2d("int32")
    for f in frames:
        f[17, :] = -1  # a gap row, as a Pilatus writes it
    return frames


CASES = [
    Case(
        "Detector",
        frames_2d(),
        lambda f, name: internal_series(f, name, compression="none", count=COUNT),
        extra={"nworkers": 2},
    ),
    Case(
        "Detector",
        frames_2d("uint32"),
        lambda f, name: internal_series(f, name, compression="bslz4", count=COUNT),
    ),
    Case(
        "Detector",
        frames_2d("float32"),
        lambda f, name: internal_series(f, name, compression="none", count=COUNT),
        extra={"compress": False},
    ),
    Case("Eiger", frames_2d("uint32"), lambda f, name: eiger_v1_series(f, name, count=COUNT)),
    Case(
        "Eiger",
        frames_2d("uint32"),
        lambda f, name: eiger_v1_series(f, name, count=COUNT),
        extra={"fast_lane": False},
    ),
    Case(
        "DectrisStream2",
        frames_2d("uint32"),
        lambda f, name: stream_v2_series({"threshold_1": f}, name, count=COUNT),
    ),
    Case(
        "Pilatus",
        pilatus_frames(),
        lambda f, name: pilatus_series(f, name, count=COUNT),
        extra={"nworkers": 2},
    ),
    Case(
        "OrcaLightning",
        [f.clip(0, 4095) for f in frames_2d(rate=500.0)],
        lambda f, name: orca_series(f, name, count=COUNT),
    ),
    Case(
        "Xspress3",
        frames_2d("uint32", (4, 256), 1.0),
        lambda f, name: xspress3_series(f, name, count=COUNT),
        rois={"ka": {"channel": 1, "bins": [10, 60]}, "all": [0, 4, 0, 256]},
    ),
]
IDS = [
    "raw-2w",
    "bslz4",
    "float-raw",
    "eiger-lane",
    "eiger-python",
    "stream2",
    "pilatus",
    "orca",
    "xspress3",
]


def check_series(receiver: Receiver, target, table: dict, want: np.ndarray) -> None:
    series = receiver.rois.series
    assert series is not None and series.names == tuple(table)
    frames, values = series.rows()
    assert list(frames) == list(range(len(want)))
    np.testing.assert_array_equal(values, want)
    assert series.latest()[0] == len(want) - 1
    with h5py.File(target, "r") as f:
        for j, name in enumerate(table):
            group = f[f"/entry/roi_{name}"]
            assert group.attrs["NX_class"] == "NXdata" and group.attrs["signal"] == "sum"
            assert list(group["frame_number"][()]) == list(range(len(want)))
            for k, key in enumerate(("sum", "max", "count")):
                np.testing.assert_array_equal(group[key][()], want[:, j, k])
            spec = table[name]
            if isinstance(spec, dict):
                assert group.attrs["channel"] == spec["channel"]
                assert list(group.attrs["bins"]) == spec["bins"]
            else:
                assert list(group.attrs["region"]) == spec
        assert f["/entry/data/data"].shape[0] == len(want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_roi_values_agree_with_numpy_for_every_detector_class(tmp_path, sender, case):
    target = tmp_path / "roi.h5"
    config = make_config(
        sender.port, tmp_path, case.cls, rois=case.rois, **EVERY_FRAME, **case.extra
    )
    receiver, snap = run_series(config, sender, case.messages(case.frames, str(target)))
    receiver.close()
    assert snap.frames_written == COUNT and snap.roi_skipped == 0
    check_series(receiver, target, case.rois, expected(case.rois, case.frames))
    if "edge" in case.rois:
        assert any("'edge'" in m and "outside" in m for m in snap.messages)


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_lambda_modules_counted_as_stacked_rows(tmp_path, compression):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 6, (4, 12, 20), dtype=np.uint16) for _ in range(4)]
    table = {"module0": [0, 12, 0, 20], "across": [10, 30, 5, 15]}
    target = tmp_path / "lambda.h5"
    with ModuleSenders([0] * 4, timeout_s=20) as modules:
        config = make_config(
            0, tmp_path, "Lambda", upstream=modules.endpoints, rois=table, **EVERY_FRAME
        )
        receiver = Receiver(config)
        receiver.start()
        modules.send(
            [
                list(s)
                for s in lambda_series(frames, str(target), count=COUNT, compression=compression)
            ]
        )
        wait_series_done(receiver)
        receiver.close()
    check_series(receiver, target, table, expected(table, frames))


def test_a_change_during_a_series_applies_from_the_next_and_rest_serves_both(tmp_path, sender):
    frames = frames_2d("uint32")
    first, second = {"a": [0, 20, 0, 20]}, {"b": [10, 40, 10, 50], "c": [0, 1, 0, 1]}
    receiver = Receiver(make_config(sender.port, tmp_path, rois=first, **EVERY_FRAME))
    receiver.start()
    try:
        with serving(receiver) as http:
            assert http.get("/rois").json() == {"definitions": first}
            messages = list(internal_series(frames, str(tmp_path / "s1.h5"), count=COUNT))
            sender.send(messages[:5])
            wait_for(lambda: receiver.snapshot().frames_received == 4, what="4 frames")
            assert http.put("/rois", json=second).json()["definitions"] == second
            sender.send(messages[5:])
            wait_series_done(receiver)
            answer = http.get("/rois", params={"frames": "true"}).json()
            assert answer["definitions"] == second
            series = answer["series"]
            assert series["names"] == ["a"] and series["regions"] == {"a": [0, 20, 0, 20]}
            want = expected(first, frames)
            assert series["frame"] == COUNT - 1 and series["counted"] == COUNT
            assert series["latest"]["a"] == dict(
                zip(("sum", "max", "count"), want[-1, 0], strict=True)
            )
            assert series["frames"]["a"]["sum"] == list(want[:, 0, 0])
            assert series["frame_number"] == list(range(COUNT))
            check_series(receiver, tmp_path / "s1.h5", first, want)

            sender.send(internal_series(frames, str(tmp_path / "s2.h5"), count=COUNT))
            wait_series_done(receiver, 2)
            assert http.get("/rois").json()["series"]["names"] == ["b", "c"]
            check_series(receiver, tmp_path / "s2.h5", second, expected(second, frames))

            bad = http.put("/rois", json={"1bad": [0, 1, 0, 1], "b": [5, 4, 0]})
            assert bad.status_code == 422
            assert http.put("/rois", json={}).json() == {
                "definitions": {},
                "series": {**http.get("/rois").json()["series"]},
            }
    finally:
        receiver.close()
    assert receiver.stats.snapshot().roi_skipped == 0


def test_counting_that_falls_behind_is_counted_and_every_frame_stored(
    tmp_path, sender, monkeypatch
):
    slow = roi.count

    def count(rois, plane):
        import time

        time.sleep(0.05)
        return slow(rois, plane)

    monkeypatch.setattr(roi, "count", count)
    monkeypatch.setattr(roi, "QUEUE_ITEMS", 1)
    frames = frames_2d("uint32")
    target = tmp_path / "behind.h5"
    config = make_config(sender.port, tmp_path, rois={"a": [0, 40, 0, 50]})
    receiver, snap = run_series(config, sender, internal_series(frames, str(target), count=40))
    receiver.close()
    assert snap.frames_written == 40 and snap.roi_skipped > 0
    assert any("ROI counting falls behind" in m for m in snap.messages)
    series = receiver.rois.series
    assert series.counted + series.skipped == 40 and series.skipped == snap.roi_skipped
    want = expected({"a": [0, 40, 0, 50]}, frames, 40)[:, 0, 0]
    with h5py.File(target, "r") as f:
        assert f["/entry/data/data"].shape[0] == 40
        sums = f["/entry/roi_a/sum"][()]
    counted = ~np.isnan(sums)
    assert counted.sum() == series.counted
    np.testing.assert_array_equal(sums[counted], want[counted])


def test_without_rois_nothing_is_counted_and_no_thread_runs(tmp_path, sender):
    target = tmp_path / "plain.h5"
    config = make_config(sender.port, tmp_path)
    receiver, snap = run_series(config, sender, internal_series(frames_2d(), str(target), count=4))
    receiver.close()
    assert receiver.rois.series is None and not receiver.detector.keep_pixels
    with h5py.File(target, "r") as f:
        assert not [name for name in f["/entry"] if name.startswith("roi_")]


def test_a_series_appended_to_a_file_appends_its_rois(tmp_path, sender):
    frames = frames_2d("uint32")
    table = {"a": [0, 20, 0, 20]}
    target = tmp_path / "append.h5"
    receiver = Receiver(make_config(sender.port, tmp_path, rois=table, **EVERY_FRAME))
    receiver.start()
    try:
        for series in range(2):
            sender.send(internal_series(frames, str(target), count=5))
            wait_series_done(receiver, series + 1)
    finally:
        receiver.close()
    with h5py.File(target, "r") as f:
        assert list(f["/entry/roi_a/frame_number"][()]) == [*range(5), *range(5)]
        np.testing.assert_array_equal(
            f["/entry/roi_a/sum"][()], np.tile(expected(table, frames, 5)[:, 0, 0], 2)
        )


def test_step_scan_frames_are_counted_at_the_default_share(tmp_path, sender):
    """One frame a series, as a step scan takes them: the queue is empty when each comes."""
    frames = frames_2d("uint32")
    table = {"a": [0, 20, 0, 20]}
    receiver = Receiver(make_config(sender.port, tmp_path, rois=table))
    receiver.start()
    try:
        for point in range(3):
            sender.send(internal_series(frames[point:], str(tmp_path / f"p{point}.h5"), count=1))
            snap = wait_series_done(receiver, point + 1)
            assert snap.roi_skipped == 0
            check_series(
                receiver, tmp_path / f"p{point}.h5", table, expected(table, frames[point:], 1)
            )
    finally:
        receiver.close()
