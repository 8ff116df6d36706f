"""Soak: a million small frames across many series, with a slow secondary consumer.

RSS must stay flat, the write path must lose nothing, and the counters must be exact.
`--soak-frames N` runs it longer (default 1,000,000: a few minutes on 2 cores).
"""

from __future__ import annotations

import multiprocessing as mp
import time

import h5py
import hdf5plugin  # noqa: F401
import psutil

from conftest import make_config, wait_for
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.consumer import drain

CTX = mp.get_context("spawn")
PER_SERIES = 10_000


def _detector(port, ready, series: int, pattern: str) -> None:
    from tango_receiver.sim.frames import synthetic_frames
    from tango_receiver.sim.internal import internal_series
    from tango_receiver.sim.sender import Sender

    frames = synthetic_frames(4, (32, 32), "uint16", rate=1.0)
    with Sender(timeout_s=120) as sender:
        port.value = sender.port
        ready.set()
        for k in range(series):
            sender.send(internal_series(frames, pattern.format(k), count=PER_SERIES))


def test_soak(tmp_path, request):
    total = request.config.getoption("--soak-frames")
    series = max(1, total // PER_SERIES)
    port, ready = CTX.Value("i", 0), CTX.Event()
    pattern = str(tmp_path / "soak_{:05d}.h5")
    detector = CTX.Process(target=_detector, args=(port, ready, series, pattern), daemon=True)
    detector.start()
    assert ready.wait(60)
    receiver = Receiver(make_config(port.value, tmp_path, forward_hwm=100))
    receiver.open()
    stop = CTX.Event()
    # about a tenth of the write rate
    consumer = CTX.Process(target=drain, args=(receiver.secondary_port, 0.001, stop), daemon=True)
    consumer.start()
    wait_for(lambda: receiver.snapshot().consumers == 1, 60, "the slow consumer to connect")
    me = psutil.Process()
    written = forwarded = dropped = 0
    rss: list[int] = []
    receiver.start()
    try:
        deadline = time.monotonic() + 60 + total / 2000  # generous: the soak must end by itself
        seen = 0
        while seen < series:
            assert time.monotonic() < deadline, f"soak stalled after {seen} of {series} series"
            for summary in (s for s in receiver.stats.history() if s.number > seen):
                assert summary.complete, summary
                assert (summary.frames_received, summary.frames_written) == (PER_SERIES,) * 2
                assert summary.frames_missing == summary.frames_invalid == 0, summary
                assert summary.frames_duplicate == summary.frames_outside == 0, summary
                assert (
                    summary.frames_forwarded + summary.forward_dropped + summary.forward_no_consumer
                ) == PER_SERIES
                assert summary.forward_no_consumer == 0, summary
                written += summary.frames_written
                forwarded += summary.frames_forwarded
                dropped += summary.forward_dropped
                rss.append(me.memory_info().rss)
                seen = summary.number
            time.sleep(0.05)
    finally:
        receiver.close()
        stop.set()
        consumer.join(10)
        detector.join(10)
    assert written == series * PER_SERIES
    assert dropped > 0 and forwarded > 0  # the consumer was slow, and it was served
    settled = rss[len(rss) // 4 :] if len(rss) >= 4 else rss
    assert max(settled) - min(settled) < 64 << 20, f"RSS grew: {[r >> 20 for r in rss]} MB"
    for k in (0, series - 1):
        with h5py.File(pattern.format(k), "r") as f:
            assert f["/entry/data/data"].shape[0] == PER_SERIES
            assert f["entry"].attrs["series_complete"]
