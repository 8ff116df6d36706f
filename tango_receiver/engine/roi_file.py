"""ROI values in the series' file: one NXdata group per ROI beside ``/entry/data``.

``/entry/roi_<name>`` holds ``sum`` (the signal), ``max`` and ``count`` (pixels above zero),
float64 with NaN for a frame not counted (``roi_skipped``), and ``frame_number``, the axis;
row ``i`` is the series' ``i``-th image, as ``data`` row ``i`` is when every frame is stored.
The region is in the group's attributes (``region`` [row0, row1, col0, col1], or ``channel``
and ``bins``). The engine thread, which owns the file, writes them at flush and close.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from ..rois import SpectrumWindow
from .writer import H5_ERRORS, WriteFailed

VALUES = ("sum", "max", "count")  # engine/roi.py's SUM, MAX, COUNT


def group_name(name: str) -> str:
    return f"/entry/roi_{name}"


def existing_rows(file: h5py.File, table: dict[str, Any]) -> int:
    """Rows already in the file's groups of these ROIs (a series appended to a file)."""
    return max(
        (file[group_name(n)]["frame_number"].shape[0] for n in table if group_name(n) in file),
        default=0,
    )


def write_rows(
    file: h5py.File, table: dict[str, Any], frames: np.ndarray, values: np.ndarray, start: int
) -> None:
    """Rows ``start:`` of every ROI's group: ``frames`` [rows], ``values`` [rows, roi, 3]."""
    stop = start + len(frames)
    try:
        for index, (name, spec) in enumerate(table.items()):
            group = _group(file, name, spec)
            for column, data in (
                ("frame_number", frames),
                *((key, values[:, index, i]) for i, key in enumerate(VALUES)),
            ):
                ds = group[column]
                if ds.shape[0] < stop:
                    ds.resize(stop, axis=0)
                ds[start:stop] = data
    except (*H5_ERRORS, ValueError, TypeError, KeyError) as exc:  # also: a name taken in the file
        raise WriteFailed(f"{file.filename}: writing ROI values failed: {exc!r}") from None


def _group(file: h5py.File, name: str, spec: Any) -> h5py.Group:
    path = group_name(name)
    if path in file:
        return file[path]
    group = file.create_group(path)
    group.attrs.update(
        {
            "NX_class": "NXdata",
            "signal": "sum",
            "auxiliary_signals": ["max", "count"],
            "axes": "frame_number",
            "frame_number_indices": 0,
        }
    )
    if isinstance(spec, SpectrumWindow):
        group.attrs.update({"channel": spec.channel, "bins": spec.bins})
    else:
        group.attrs["region"] = spec
    group.create_dataset(
        "frame_number", shape=(0,), maxshape=(None,), dtype="int64", chunks=(1024,)
    )
    for key in VALUES:
        group.create_dataset(
            key, shape=(0,), maxshape=(None,), dtype="float64", chunks=(1024,), fillvalue=np.nan
        )
    return group
