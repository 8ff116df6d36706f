"""The benchmark suite runs end to end (real processes, sockets and files); its numbers are not
judged here (they belong to `make bench` on a quiet machine), only that every column is there and
no frame is lost."""

from __future__ import annotations

import json
import logging

from tango_receiver.bench.measure import (bracket, frames_per_s, measure_decode,
                                          scenario_named, warm_memory)
from tango_receiver.bench.run import COLUMNS, run_bench


def test_quick_scenario_1_runs_and_loses_nothing(tmp_path):
    """With the compiled lane and without it (every frame through Python)."""
    output = tmp_path / "bench.json"
    rows = run_bench(quick=True, directory=tmp_path, output=output, only=["1-eiger"])
    assert [r["scenario"] for r in rows] == ["1-eiger-v1", "1-eiger-v1-python"]
    for row in rows:
        assert set(row) == set(COLUMNS)
        assert row["frames"] == scenario_named("1-eiger-v1").quick_frames and row["lost"] == 0
        assert row["receiver f/s"] > 0 and row["PULL f/s"] > 0 and row["CPU us/frame"] > 0
        assert row["sender CPU us/frame"] > 0  # known once the sender has ended
    assert json.loads(output.read_text())["rows"] == rows
    assert not list(tmp_path.glob("*.h5"))  # the suite's files are removed


def test_decoders_alone_take_every_frame_in_each_thread():
    scenario = scenario_named("4-pilatus-2w")
    result = measure_decode(scenario, quick=True)
    assert result["frames"] == scenario.quick_frames and result["seconds"] > 0


def test_the_bare_loop_before_and_after_the_receiver_counts_as_one_run():
    before = {"frames": 10, "seconds": 1.0, "cpu_s": 0.5, "wire_bytes": 7, "sender_cpu_s": 0.1}
    after = {"frames": 10, "seconds": 3.0, "cpu_s": 1.5, "wire_bytes": 7, "sender_cpu_s": 0.2}
    both = bracket(before, after)
    assert frames_per_s(both) == 5.0 and both["cpu_s"] == 2.0  # not the mean of 10 and 3.3
    assert both["wire_bytes"] == 7 and both["sender_cpu_s"] == 0.1


def test_a_warm_up_that_cannot_write_says_so_and_lets_the_bench_go_on(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        warm_memory(1 << 20, tmp_path / "absent")
    assert f"memory not warmed in {tmp_path / 'absent'}" in caplog.text
    warm_memory(1 << 20, tmp_path)  # and where it can, it leaves nothing behind
    assert list(tmp_path.iterdir()) == []
