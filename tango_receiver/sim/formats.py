"""One entry point for every simulated wire format, for the CLI, the demo and the benchmarks.

The formats are the detector classes' simulators (``Detector.simulator``), so a new detector
class brings its simulator here by being defined.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..detector import Detector, simulators
from .frames import synthetic_frames
from .profiles import PROFILES

DISTINCT_FRAMES = 8  # cycled through: generating every frame would cost more than sending it
#: what a wire format that no profile plays sends unless told otherwise: an EIGER 1M's frame
FALLBACK_FORM: tuple[tuple[int, ...], str] = ((1065, 1030), "uint32")


def formats() -> list[str]:
    """What ``tango-receiver simulate`` takes: a wire format, or a detector profile."""
    return sorted(simulators()) + sorted(PROFILES)


def wire_format(fmt: str) -> str:
    """A format's own name, or the format a profile streams."""
    return PROFILES[fmt].format if fmt in PROFILES else fmt


def reader(fmt: str) -> type[Detector]:
    """The detector class that receives a format (a profile: the format it streams)."""
    return simulators()[wire_format(fmt)]


def default_port(fmt: str) -> int:
    """The port a receiver of this format connects to when its entry names none, so that the
    simulator and a receiver on defaults find each other (EIGER 9999, stream v2 31001, ...)."""
    return reader(fmt).default_port


def default_form(fmt: str) -> tuple[tuple[int, ...], str]:
    """The shape and dtype ``simulate FMT`` sends when ``--shape`` / ``--dtype`` are not given.

    A profile's own; for a wire format, its first profile's (the detectors.yaml entry of its
    class), so that a simulator and a receiver left on their defaults agree on the frame.
    """
    if fmt in PROFILES:
        return PROFILES[fmt].shape, PROFILES[fmt].dtype
    plays = (p for p in PROFILES.values() if p.format == fmt)
    return next(((p.shape, p.dtype) for p in plays), FALLBACK_FORM)


def series_for(
    fmt: str, shape: tuple[int, ...], dtype: str, count: int, filename: str = "", series: int = 0
) -> Iterator[list]:
    """A profile's shape and dtype replace those given."""
    if fmt in PROFILES:
        shape, dtype = PROFILES[fmt].shape, PROFILES[fmt].dtype
    frames = synthetic_frames(min(count, DISTINCT_FRAMES) or 1, shape, dtype, seed=series)
    return reader(fmt).simulator.series(frames, filename, count, series)
