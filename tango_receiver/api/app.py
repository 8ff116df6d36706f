"""The FastAPI application of one receiver.

Every route reads ``receiver.snapshot()`` or the live-view slot at request time and keeps nothing
of its own: the Tango device reads the same snapshot, so an HTTP client and a Tango client can
never see two different frame counts. Cheap routes are ``async`` so that a client polling
``/status`` is answered on the event loop at once; routes that decode or encode a frame are plain
functions, which FastAPI runs in its thread pool, so a large PNG never delays a status poll.
"""

from __future__ import annotations

import io
import logging
import pickle
from enum import StrEnum
from typing import Annotated
from urllib.parse import quote

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image as PILImage
from pydantic import BaseModel

from ..engine.liveview import (
    DOWNSAMPLE_MAX,
    DOWNSAMPLE_MIN,
    LiveFrame,
    LiveView,
    effective_downsample,
)
from ..engine.receiver import Receiver
from ..engine.stats import State, StatsSnapshot
from . import metrics, rois
from .liveview_page import render_page

log = logging.getLogger(__name__)

#: The binning range the engine accepts (``Receiver.downsample``), published in the OpenAPI spec.
#: Existing clients unpickle with whatever Python they run; protocol 4 is read by every Python 3
#: still in service, and its framing adds nothing for a list of one dict and a few bytes objects.
PICKLE_PROTOCOL = 4
#: Live view must never be served from a cache: the same URL is a different frame every time.
NO_STORE = {"Cache-Control": "no-store"}


class FrameFormat(StrEnum):
    pickle = "pickle"
    raw = "raw"
    npy = "npy"
    png = "png"


MEDIA_TYPES: dict[FrameFormat, str] = {
    FrameFormat.pickle: "image/pickle",
    FrameFormat.raw: "application/octet-stream",
    FrameFormat.npy: "application/x-npy",
    FrameFormat.png: "image/png",
}
#: Which format a wildcard such as ``image/*`` or ``application/*`` picks: the first that fits.
#: A browser asks ``<img>`` sources with ``image/*`` and can only show the PNG.
WILDCARD_PREFERENCE = (FrameFormat.png, FrameFormat.pickle, FrameFormat.raw, FrameFormat.npy)


class StatusOut(BaseModel):
    state: State
    error: str | None = None


class ValueOut(BaseModel):
    value: int


class Problem(BaseModel):
    detail: str


def get_receiver(request: Request) -> Receiver:
    """The receiver this app serves; tests give ``create_app`` their own, the device its one."""
    return request.app.state.receiver


ReceiverDep = Annotated[Receiver, Depends(get_receiver)]

# --- status: the surface existing clients poll ------------------------------------------------
status_router = APIRouter(tags=["status"])


@status_router.get("/status", response_model=StatusOut, response_model_exclude_none=True)
async def status(receiver: ReceiverDep) -> StatusOut:
    """``running`` from the series header until its series_end: clients arm the detector, wait
    for ``running``, then poll until ``idle``. ``error`` carries its cause."""
    snap = receiver.snapshot()
    return StatusOut(state=snap.state, error=snap.error if snap.state == "error" else None)


@status_router.post("/reset", response_model=StatusOut, response_model_exclude_none=True)
async def reset(receiver: ReceiverDep) -> StatusOut:
    """What the Tango ``Reset`` command does: leave the error state, acknowledge the losses.
    A receiver whose thread died stays in error (see ``/health``)."""
    receiver.reset()
    return await status(receiver)


@status_router.get(
    "/health",
    response_model=StatusOut,
    response_model_exclude_none=True,
    responses={503: {"model": StatusOut}},
)
async def health(receiver: ReceiverDep) -> Response:
    """200 while the receiver works (an error with a file is not a reason to restart it);
    503 once a thread of it has died: the liveness probe in deploy/ restarts the pod."""
    why = receiver.health()
    if why:
        return JSONResponse(StatusOut(state="error", error=why).model_dump(), status_code=503)
    return JSONResponse(StatusOut(state=receiver.snapshot().state).model_dump(exclude_none=True))


@status_router.get("/received_frames", response_model=ValueOut)
async def received_frames(receiver: ReceiverDep) -> ValueOut:
    """Frames received in the current series, or in the last one once it ended."""
    return ValueOut(value=receiver.snapshot().frames_received)


@status_router.get("/stats", response_model=StatsSnapshot)
async def stats(receiver: ReceiverDep) -> StatsSnapshot:
    """Every counter, rate and state of the receiver in one consistent snapshot."""
    return receiver.snapshot()


# --- live view: binning and the latest frame ---------------------------------------------------
frames_router = APIRouter(tags=["live view"])


@frames_router.get("/downsample", response_model=ValueOut)
async def get_downsample(receiver: ReceiverDep) -> ValueOut:
    return ValueOut(value=receiver.downsample)


@frames_router.post(
    "/downsample",
    response_model=ValueOut,
    responses={422: {"description": "value outside 1..64 or not an integer"}},
)
async def set_downsample(
    receiver: ReceiverDep,
    value: Annotated[
        int,
        Query(
            ge=DOWNSAMPLE_MIN,
            le=DOWNSAMPLE_MAX,
            description="live-view binning: block mean over value x value",
        ),
    ],
) -> ValueOut:
    try:
        receiver.downsample = value
    except ValueError as exc:  # the engine is the authority should its range ever change
        raise HTTPException(422, str(exc)) from None
    log.info("%s: live-view downsample set to %d", receiver.config.name, value)
    return ValueOut(value=receiver.downsample)


@frames_router.get(
    "/last_frame",
    response_class=Response,
    responses={
        200: {
            "description": "the latest frame, binned by /downsample",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
        404: {
            "model": Problem,
            "description": "no frame to show yet (none received, or the "
            "first still being decoded), or no such channel",
        },
        406: {"model": Problem, "description": "Accept names no format served here"},
    },
)
def last_frame(
    receiver: ReceiverDep,
    request: Request,
    fmt: Annotated[
        FrameFormat | None,
        Query(
            alias="format",
            description="overrides Accept; without both: pickle (existing clients)",
        ),
    ] = None,
    log_scale: Annotated[bool, Query(alias="log", description="PNG only: log scale")] = False,
    channel: Annotated[int, Query(ge=0, description="raw, npy, png: which plane")] = 0,
) -> Response:
    """``image/pickle`` is ``[header, blob, ...]``, one raw blob per channel, as existing clients
    unpickle it; raw and npy carry the header in ``X-`` response headers; PNG is autoscaled.
    The format follows ``Accept`` (read from the request: OpenAPI ignores a parameter by that
    name) unless ``format`` names one."""
    accept = request.headers.get("accept")
    chosen = fmt or negotiate(accept)
    if chosen is None:
        raise HTTPException(
            406,
            f"cannot serve {accept!r}; /last_frame serves "
            f"{', '.join(MEDIA_TYPES.values())} (or ?format=...)",
        )
    if chosen is FrameFormat.pickle:
        body = pickled(receiver.liveview, receiver.downsample)
        if body is None:
            raise HTTPException(404, "no frame to show yet")
        return Response(body, media_type=MEDIA_TYPES[chosen], headers=NO_STORE)
    view = receiver.liveview.view(receiver.downsample)
    if view is None:
        raise HTTPException(404, "no frame to show yet")
    frame, arrays = view
    if channel >= len(frame.channels):
        raise HTTPException(
            404, f"frame {frame.frame} has {len(frame.channels)} channel(s); no channel {channel}"
        )
    factor = effective_downsample(frame.channels[channel].shape, receiver.downsample)
    array = arrays[channel]
    headers = NO_STORE | frame_headers(frame, array, channel, factor)
    if chosen is FrameFormat.raw:
        body = np.ascontiguousarray(array).tobytes()
    elif chosen is FrameFormat.npy:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        body = buffer.getvalue()
    else:
        body = png(array, log_scale)
    return Response(body, media_type=MEDIA_TYPES[chosen], headers=headers)


def negotiate(accept: str | None) -> FrameFormat | None:
    """The format an Accept header prefers, or None when it names none served here.

    No Accept or ``*/*`` means pickle: existing clients send one of those and unpickle the reply.
    """
    if not accept:
        return FrameFormat.pickle
    ranges = []
    for index, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and media:
            ranges.append((-quality, index, media.lower()))
    for _, _, media in sorted(ranges):
        if media == "*/*":
            return FrameFormat.pickle
        kind, _, subtype = media.partition("/")
        for fmt in WILDCARD_PREFERENCE:
            served = MEDIA_TYPES[fmt]
            if served == media or (subtype == "*" and served.startswith(kind + "/")):
                return fmt
    return None


def pickled(liveview: LiveView, downsample: int) -> bytes | None:
    """What the system this replaces answers, so existing clients read it unchanged: the
    parts as they came (``LiveFrame.parts``: a compressed blob as its bitshuffle-LZ4 chunk), or,
    for an uncompressed uint16 frame with ``downsample > 1``, the header with the binned shape
    and the binned uint16 pixels as a numpy array. None: no frame yet."""
    frame = liveview.latest()
    if frame is None:
        return None
    parts = frame.parts()
    if downsample > 1 and _binnable(parts):
        view = liveview.view(downsample)
        if view is not None and _binnable(binned_parts := view[0].parts()):
            binned = view[1][0].astype(np.uint16)  # the mean, truncated as the original does
            parts = [binned_parts[0] | {"shape": list(binned.shape)}, binned]
    return pickle.dumps(parts, protocol=PICKLE_PROTOCOL)


def _binnable(parts: list) -> bool:
    """Whether the original bins this frame for live view: one uncompressed uint16 blob."""
    header = parts[0]
    return (
        len(parts) == 2 and header.get("compression") == "none" and header.get("type") == "uint16"
    )


def frame_headers(frame: LiveFrame, array: np.ndarray, channel: int, factor: int) -> dict[str, str]:
    """What a header dict says, as HTTP headers; the series id is percent-encoded because HTTP
    headers are Latin-1 and a detector may send any text."""
    return {
        "X-Frame": str(frame.frame),
        "X-Msg-Number": str(frame.msg_number),
        "X-Series-Id": quote(frame.series_id, safe=""),
        "X-Channel": str(channel),
        "X-Shape": ",".join(map(str, array.shape)),
        "X-Dtype": array.dtype.name,
        "X-Downsample": str(factor),
    }


def png(array: np.ndarray, log_scale: bool) -> bytes:
    """8-bit grey, min..max of the finite pixels mapped to 0..255; a flat frame is black."""
    plane = np.asarray(array, dtype=np.float32)
    plane = plane.reshape(-1, plane.shape[-1]) if plane.ndim > 2 else np.atleast_2d(plane)
    if log_scale:
        plane = np.log1p(np.clip(plane, 0, None))
    finite = np.isfinite(plane)
    pixels = np.zeros(plane.shape, dtype=np.uint8)
    if finite.any():
        low, high = float(plane[finite].min()), float(plane[finite].max())
        if high > low:
            scaled = (np.where(finite, plane, low) - low) * (255.0 / (high - low))
            pixels = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


# --- metrics and the page -------------------------------------------------------------------
page_router = APIRouter(tags=["live view"])


@page_router.get("/", response_class=HTMLResponse, include_in_schema=False)
@page_router.get("/live", response_class=HTMLResponse)
async def live_page(receiver: ReceiverDep) -> HTMLResponse:
    """The live view for a person at the beamline: latest frame, counters, state, file."""
    return HTMLResponse(render_page(receiver.config.name), headers=NO_STORE)


metrics_router = APIRouter(tags=["monitoring"])


@metrics_router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {metrics.CONTENT_TYPE: {}}}},
)
async def prometheus_metrics(receiver: ReceiverDep) -> PlainTextResponse:
    return PlainTextResponse(
        metrics.render(receiver.snapshot(), receiver.config.name), media_type=metrics.CONTENT_TYPE
    )


def create_app(receiver: Receiver) -> FastAPI:
    """One app per receiver: the device server runs one receiver per process, one port each.

    ``/docs`` loads Swagger UI from files served here (fastapi-offline), not from a CDN: a
    beamline network usually reaches no other host. No ``/redoc``: ReDoc fetches its vendor's
    logo from the vendor's CDN whatever it is served from."""
    app = FastAPIOffline(
        title=f"tango_receiver {receiver.config.name}",
        description="REST sidecar of a detector data receiver",
        version="1",
        redoc_url=None,
    )
    app.state.receiver = receiver
    for router in (status_router, frames_router, page_router, metrics_router):
        app.include_router(router)
    app.include_router(rois.router)
    return app
