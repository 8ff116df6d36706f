"""One entry point for every simulated wire format, for the CLI, the demo and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .eiger_v1 import eiger_v1_series
from .frames import synthetic_frames
from .stins import stins_series
from .stream_v2 import stream_v2_series

DISTINCT_FRAMES = 8  # cycled through: generating every frame would cost more than sending it

SERIES: dict[str, Callable[..., Iterator[list]]] = {
    "stins": lambda frames, filename, count, series: stins_series(
        frames, filename, count=count, metadata={"series": series}),
    "eiger": lambda frames, filename, count, series: eiger_v1_series(
        frames, filename, series=series, count=count),
    "stream2": lambda frames, filename, count, series: stream_v2_series(
        {"threshold_1": frames}, filename, series_id=series, count=count),
}


def series_for(fmt: str, shape: tuple[int, ...], dtype: str, count: int, filename: str = "",
               series: int = 0) -> Iterator[list]:
    frames = synthetic_frames(min(count, DISTINCT_FRAMES) or 1, shape, dtype, seed=series)
    return SERIES[fmt](frames, filename, count, series)
