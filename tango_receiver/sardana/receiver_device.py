"""What the Sardana controllers (pool/) read from the receiver's Tango device, and what they
declare alike: the receiver property, frames per point, step scans only.

Each read is one ``read_attributes`` request: the device answers the counters of one request
from one snapshot and its ROI attributes from one series (tango/roi_attributes.py), so a point
is never judged from values of two different moments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tango
from sardana.pool import AcqSynch
from sardana.pool.controller import (
    Access,
    DataAccess,
    DefaultValue,
    Description,
    FGet,
    FSet,
    Memorize,
    Memorized,
    Type,
)

from .points import Progress, RoiRows

#: the controllers' property naming the receiver
RECEIVER_DEVICE = {
    Type: str,
    Description: "Tango device name of the receiver, e.g. tango_receiver/eiger/eiger-sim",
}
#: the attribute (per axis, or per controller) saying how many frames a point waits for
FRAMES_PER_POINT = {
    Type: int,
    Access: DataAccess.ReadWrite,
    DefaultValue: 1,
    Memorize: Memorized,
    FGet: "get_frames_per_point",
    FSet: "set_frames_per_point",
    Description: "frames the detector sends per scan point (per repetition)",
}

PROGRESS = ["series_count", "series_done", "frames_written", "filename", "State", "Status"]
ROI_PROGRESS = [*PROGRESS, "roi_series", "roi_resolved"]


def read_progress(proxy: tango.DeviceProxy, names: list[str] = PROGRESS) -> Progress:
    """The receiver's progress from one read; ``ROI_PROGRESS`` adds where its ROI values are."""
    values = {a.name.lower(): a.value for a in proxy.read_attributes(names)}
    fault = ""
    if values["state"] == tango.DevState.FAULT:
        fault = values["status"].splitlines()[0].removeprefix("FAULT: ")
    return Progress(
        values["series_count"],
        values["series_done"],
        values["frames_written"],
        values["filename"],
        fault,
        values.get("roi_series", 0),
        values.get("roi_resolved", 0),
    )


def read_roi_rows(proxy: tango.DeviceProxy) -> RoiRows:
    """The ROI values of the receiver's current or last series, from one read."""
    window = proxy.get_attribute_config("roi_sums").max_dim_y
    series, names, sums = proxy.read_attributes(["roi_series", "roi_names", "roi_sums"])
    roi_names = tuple(names.value if names.value is not None else ())
    values = sums.value if sums.value is not None else ()  # no rows: None, or flat
    rows = np.asarray(values, float).reshape(-1, len(roi_names)) if roi_names else np.zeros((0, 0))
    return RoiRows(series.value, roi_names, rows, window)


def frames_per_point(value: int) -> int:
    """A FramesPerPoint written, checked."""
    if value < 1:
        raise ValueError(f"FramesPerPoint must be at least 1, not {value}")
    return value


def refuse_continuous(device: str, parameter: str, value: Any) -> None:
    """Software trigger only: one value per acquisition. Other synchronizations (continuous
    scans) want a value per repetition, which the controllers do not give, so they are
    refused rather than recorded wrong."""
    if parameter.lower() == "synchronization" and value != AcqSynch.SoftwareTrigger:
        raise ValueError(
            f"{device}: step scans only (software trigger), not {AcqSynch(value).name}"
        )
