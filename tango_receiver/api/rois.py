"""``/rois``: the receiver's ROI definitions (rois.py) and values (engine/roi.py) over REST.

Read at request time from ``receiver.rois``, the object the Tango device reads too. JSON has no
NaN: a value not counted (yet, or skipped) is ``null``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel

from ..engine.receiver import Receiver
from ..engine.roi import COUNT, MAX, SUM
from ..rois import RoiTable, table_json


def _receiver(request: Request) -> Receiver:
    """The app's receiver, as ``app.get_receiver`` gives it (app.py includes this router, so
    this module cannot import it)."""
    return request.app.state.receiver


ReceiverDep = Annotated[Receiver, Depends(_receiver)]
router = APIRouter(tags=["rois"])


class RoiValues(BaseModel):
    sum: float | None
    max: float | None
    count: float | None


class RoiSeriesOut(BaseModel):
    names: list[str]
    regions: dict[str, list[int]]  # [row0, row1, col0, col1] in the frame (spectra: one row)
    frame: int  # frame number of ``latest``; -1 before one
    latest: dict[str, RoiValues]
    images: int  # images of the series handed to counting
    counted: int
    skipped: int
    frame_number: list[int] | None = None  # with ?frames=true: a row per image
    frames: dict[str, dict[str, list[float | None]]] | None = None  # ROI -> sum/max/count


class RoisOut(BaseModel):
    definitions: dict[str, Any]  # for the next series
    series: RoiSeriesOut | None = None  # the current or last series counted; absent: none


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def rois_out(receiver: Receiver, frames: bool) -> RoisOut:
    counter = receiver.rois
    series = counter.series
    if series is None:
        return RoisOut(definitions=table_json(counter.table), series=None)
    frame, latest = series.latest()
    out = RoiSeriesOut(
        names=list(series.names),
        frame=frame,
        regions={roi.name: [*roi.rows, *roi.cols] for roi in series.rois},
        latest={
            name: RoiValues(**dict(zip(("sum", "max", "count"), _floats(latest[i]), strict=True)))
            for i, name in enumerate(series.names)
        },
        images=series.submitted,
        counted=series.counted,
        skipped=series.skipped,
    )
    if frames:
        numbers, values = series.rows()
        out.frame_number = numbers.tolist()
        out.frames = {
            name: {
                key: _floats(values[:, i, column])
                for key, column in (("sum", SUM), ("max", MAX), ("count", COUNT))
            }
            for i, name in enumerate(series.names)
        }
    return RoisOut(definitions=table_json(counter.table), series=out)


@router.get("/rois", response_model=RoisOut, response_model_exclude_none=True)
def get_rois(
    receiver: ReceiverDep,
    frames: Annotated[bool, Query(description="every image's values too")] = False,
) -> RoisOut:
    """The definitions for the next series, and the current (or last) series' values: the
    newest frame counted, and with ``frames=true`` every image's."""
    return rois_out(receiver, frames)


@router.put(
    "/rois",
    response_model=RoisOut,
    response_model_exclude_none=True,
    responses={422: {"description": "definitions that are not a table of ROIs"}},
)
def put_rois(
    receiver: ReceiverDep,
    table: Annotated[
        RoiTable,
        Body(
            examples=[{"peak": [100, 140, 200, 260], "fe_ka": {"channel": 0, "bins": [630, 660]}}],
            description="name -> [row0, row1, col0, col1] or {channel, bins}; {} for none",
        ),
    ],
) -> RoisOut:
    """Set the ROIs; they apply from the next series (the one in progress keeps its own)."""
    try:
        receiver.set_rois(table)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return rois_out(receiver, False)
