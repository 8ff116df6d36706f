"""One entry point for every simulated wire format, for the CLI, the demo and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .eiger_v1 import eiger_v1_series
from .frames import synthetic_frames
from .lambda_ import first_module_series
from .orca import orca_series
from .pilatus import pilatus_series
from .profiles import PROFILES
from .stins import stins_series
from .stream_v2 import stream_v2_series
from .xspress3 import xspress3_series

DISTINCT_FRAMES = 8  # cycled through: generating every frame would cost more than sending it
TWELVE_BIT = 4095  # where a 12-bit (Mono12p) sensor saturates

SERIES: dict[str, Callable[..., Iterator[list]]] = {
    "stins": lambda frames, filename, count, series: stins_series(
        frames, filename, count=count, metadata={"series": series}),
    "eiger": lambda frames, filename, count, series: eiger_v1_series(
        frames, filename, series=series, count=count),
    "stream2": lambda frames, filename, count, series: stream_v2_series(
        {"threshold_1": frames}, filename, series_id=series, count=count),
    "pilatus": lambda frames, filename, count, series: pilatus_series(
        frames, filename, metadata={"series": series}, count=count),
    "orca": lambda frames, filename, count, series: orca_series(
        [f.clip(0, TWELVE_BIT) for f in frames], filename, metadata={"series": series},
        count=count),
    "lambda": lambda frames, filename, count, series: first_module_series(
        frames, filename, count=count),
    "xspress3": lambda frames, filename, count, series: xspress3_series(
        frames, filename, metadata={"series": series}, count=count),
}
#: what ``tango-receiver simulate`` takes: a wire format, or a detector profile
FORMATS = sorted(SERIES) + sorted(PROFILES)
#: the detector class (detectors.yaml ``class``) that receives each wire format
READERS: dict[str, str] = {
    "stins": "Detector", "eiger": "Eiger", "stream2": "DectrisStream2", "pilatus": "Pilatus",
    "orca": "OrcaLightning", "lambda": "Lambda", "xspress3": "Xspress3",
}


def wire_format(fmt: str) -> str:
    """A format's own name, or the format a profile streams."""
    return PROFILES[fmt].format if fmt in PROFILES else fmt


def default_port(fmt: str) -> int:
    """The port a receiver of this format connects to when its entry names none, so that the
    simulator and a receiver on defaults find each other (EIGER 9999, stream v2 31001, ...)."""
    from ..detector import DETECTOR_CLASSES

    return DETECTOR_CLASSES[READERS[wire_format(fmt)]].default_port


def series_for(fmt: str, shape: tuple[int, ...], dtype: str, count: int, filename: str = "",
               series: int = 0) -> Iterator[list]:
    """A profile's shape and dtype replace those given."""
    if fmt in PROFILES:
        shape, dtype = PROFILES[fmt].shape, PROFILES[fmt].dtype
    frames = synthetic_frames(min(count, DISTINCT_FRAMES) or 1, shape, dtype, seed=series)
    return SERIES[wire_format(fmt)](frames, filename, count, series)
