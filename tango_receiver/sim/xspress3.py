"""An Xspress3 as this receiver takes it: per frame, spectra and the per-channel scalers.

The scalers are those the Xspress3 streamer sends beside each histogram, with values that
follow from the spectra the way the hardware's do (good events within all events, a dead-time
correction above 1), so that they look plausible in a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .internal import encoded_series

CLOCK_HZ = 80e6  # Xspress3 clock ticks per second
EXPTIME_S = 0.001
EVENT_WIDTH = 6


def scalers_for(spectra: np.ndarray) -> dict[str, list]:
    """Scalers consistent with one frame's ``[channels, bins]`` spectra."""
    good = spectra.sum(axis=1, dtype=np.int64)
    events = good + good // 20
    ticks = int(CLOCK_HZ * EXPTIME_S)
    dtc = 1.0 + events / max(ticks, 1)
    return {
        "ocr": (good / EXPTIME_S).tolist(),
        "AllEvents": events.tolist(),
        "AllGood": good.tolist(),
        "ClockTicks": [ticks] * len(good),
        "TotalTicks": [ticks] * len(good),
        "ResetTicks": (events // 100).tolist(),
        "event_widths": [EVENT_WIDTH] * len(good),
        "dtc": dtc.tolist(),
    }


def xspress3_series(
    spectra: Sequence[np.ndarray],
    filename: str = "",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
) -> Iterator[list[bytes]]:
    """header, ``count`` images (spectra + scalers, cycling through ``spectra``), series_end."""
    images = [
        (
            {
                "shape": list(s.shape),
                "type": s.dtype.name,
                "compression": "none",
                "exptime": EXPTIME_S,
            },
            [s.tobytes(), json.dumps(scalers_for(s)).encode()],
        )
        for s in spectra
    ]
    return encoded_series(images, filename, metadata, count)


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return xspress3_series(frames, filename, metadata={"series": series}, count=count)
