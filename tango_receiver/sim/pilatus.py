"""A DECTRIS Pilatus as the existing deployments receive it: every image a whole CBF file, with
the PILATUS_1.2 mini-header a PILATUS3 camserver writes (geometry, exposure, wavelength)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ..codecs.cbf import encode_cbf
from .internal import encoded_series

#: what a PILATUS3 2M at an MX beamline writes; the beam centre is the frame's middle, the
#: start angle steps by the increment from frame to frame
MINI_HEADER = """\
# Detector: PILATUS3 2M, S/N 24-0118
# {timestamp}
# Pixel_size 172e-6 m x 172e-6 m
# Silicon sensor, thickness 0.001000 m
# Exposure_time 0.0990000 s
# Exposure_period 0.1000000 s
# Tau = 0 s
# Count_cutoff 1048574 counts
# Threshold_setting: 6330 eV
# Gain_setting: autog (vrf = 1.000)
# N_excluded_pixels = 0
# Excluded_pixels: badpix_mask.tif
# Flat_field: (nil)
# Trim_file: (nil)
# Image_path: /ramdisk/
# Wavelength 0.97625 A
# Detector_distance 0.30000 m
# Beam_xy ({beam_x:.2f}, {beam_y:.2f}) pixels
# Start_angle {angle:.4f} deg.
# Angle_increment 0.1000 deg.
# Oscillation_axis X, CW
# N_oscillations 1"""


def mini_header(shape: tuple[int, ...], index: int, timestamp: str) -> str:
    """The mini-header of image ``index`` of a series that began at ``timestamp``."""
    return MINI_HEADER.format(
        timestamp=timestamp, beam_x=shape[1] / 2, beam_y=shape[0] / 2, angle=0.1 * index
    )


def pilatus_series(
    frames: Sequence[np.ndarray],
    filename: str = "",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
) -> Iterator[list[bytes]]:
    """header, ``count`` CBF images (int32, cycling through ``frames``), series_end."""
    began = datetime.now().isoformat(timespec="milliseconds")
    images = [
        (
            {"shape": list(f.shape), "type": "int32", "compression": "cbf"},
            [encode_cbf(f, mini_header(f.shape, i, began))],
        )
        for i, f in enumerate(frames)
    ]
    return encoded_series(images, filename, metadata, count)


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return pilatus_series(frames, filename, metadata={"series": series}, count=count)
