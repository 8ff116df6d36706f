"""Regions of interest: what a receiver counts per frame (sum, max, pixels above zero).

A receiver's ROIs are a table, name -> region, from the detectors.yaml entry (``rois:``), or
set between series through Tango (``SetRois``) or REST (``PUT /rois``); JSON and YAML spell it
alike::

    rois:
      peak: [100, 140, 200, 260]          # rectangle [row0, row1, col0, col1], stops exclusive
      fe_ka: {channel: 0, bins: [630, 660]}   # spectra (Xspress3): one channel, a bin range

A frame with more than two dimensions (a Lambda's ``[module, y, x]``) is counted as its planes
stacked into rows, as the live view shows it; a spectrum window is the rectangle of one row.
Names become HDF5 group names (``/entry/roi_<name>``), so they are identifiers.

This module knows no detector and no engine: the config model, the engine, Tango and REST all
read the table through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

MAX_ROIS = 64  # what the Tango spectrum attributes hold


def _sorted(span: list[int]) -> list[int]:
    """Each (start, stop) pair in order: a region is the same whichever way it is written, and
    so the OpenAPI schema (which cannot say "stop > start") states exactly what is accepted."""
    return [n for pair in zip(span[::2], span[1::2], strict=True) for n in sorted(pair)]


Rectangle = Annotated[
    list[NonNegativeInt], Field(min_length=4, max_length=4), AfterValidator(_sorted)
]


class SpectrumWindow(BaseModel):
    """Bins ``[bins[0], bins[1])`` of one channel of ``[channels, bins]`` spectra."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: NonNegativeInt
    bins: Annotated[
        list[NonNegativeInt], Field(min_length=2, max_length=2), AfterValidator(_sorted)
    ]


RoiName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$")]
RoiSpec = Rectangle | SpectrumWindow
#: names outside the pattern are refused, and the schema (REST's OpenAPI) says so
RoiTable = Annotated[
    dict[RoiName, RoiSpec],
    Field(max_length=MAX_ROIS, json_schema_extra={"additionalProperties": False}),
]

_TABLE = TypeAdapter(RoiTable)


@dataclass(frozen=True)
class Roi:
    """One region in frame coordinates (rows of the frame's planes stacked, columns)."""

    name: str
    rows: tuple[int, int]
    cols: tuple[int, int]

    def clipped(self, rows: int, cols: int) -> Roi:
        """The part inside a frame of ``rows`` x ``cols`` (possibly empty)."""
        return Roi(
            self.name,
            (min(self.rows[0], rows), min(self.rows[1], rows)),
            (min(self.cols[0], cols), min(self.cols[1], cols)),
        )

    @property
    def empty(self) -> bool:
        return self.rows[0] >= self.rows[1] or self.cols[0] >= self.cols[1]


def regions(table: dict[str, Any]) -> tuple[Roi, ...]:
    """The table's regions, in its order."""
    out = []
    for name, spec in table.items():
        if isinstance(spec, SpectrumWindow):
            out.append(Roi(name, (spec.channel, spec.channel + 1), (spec.bins[0], spec.bins[1])))
        else:
            out.append(Roi(name, (spec[0], spec[1]), (spec[2], spec[3])))
    return tuple(out)


def parse_table(value: Any) -> dict[str, Any]:
    """A table from JSON text or a mapping, checked; ValueError names what is wrong."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"ROI definitions are not JSON: {exc}") from None
    try:
        return _TABLE.validate_python(value)
    except ValidationError as exc:
        raise ValueError(
            "invalid ROI definitions: "
            + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'table'}: {e['msg']}" for e in exc.errors()
            )
        ) from None


def table_json(table: dict[str, Any]) -> dict[str, Any]:
    """The table as plain JSON values (what Tango and REST read back)."""
    return _TABLE.dump_python(table, mode="json")


def frame_plane(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) a frame of ``shape`` is counted as: leading dimensions stacked as rows."""
    if not shape:
        return 1, 1
    rows = 1
    for n in shape[:-1]:
        rows *= n
    return rows, shape[-1]


def misplaced(table: dict[str, Any], shape: tuple[int, ...]) -> list[str]:
    """What of the table is empty or lies outside a frame of ``shape``, as sentences naming
    the ROI (refused where the entry gives ``shape``, else said once per series)."""
    rows, cols = frame_plane(shape)
    return [
        f"ROI {roi.name!r} rows {roi.rows[0]}:{roi.rows[1]} cols {roi.cols[0]}:{roi.cols[1]} "
        + ("is empty" if roi.empty else f"reaches outside the {rows} x {cols} frame")
        for roi in regions(table)
        if roi.empty or roi.rows[1] > rows or roi.cols[1] > cols
    ]
