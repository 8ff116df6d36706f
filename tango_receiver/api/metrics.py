"""The stats snapshot in the Prometheus text exposition format (version 0.0.4).

Written by hand: it is a few lines of text per scrape, and rendering straight from the snapshot
keeps the one source of truth (a client library would keep its own registry of values to sync).
The per-series counters restart at every series, so they are exposed as gauges named
``..._series_...``; only the number of series never goes down, and is a counter.
"""

from __future__ import annotations

import math

from ..engine.stats import ERROR, IDLE, RUNNING, SERIES_COUNTERS, StatsSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "tango_receiver"
Sample = tuple[str, float | int | bool]  # (label set, value)

#: snapshot field -> (metric name without prefix, type, help)
SCALARS: dict[str, tuple[str, str, str]] = {
    "series_count": (
        "series_started_total",
        "counter",
        "Series started since the receiver started.",
    ),
    "last_frame_number": (
        "last_frame_number",
        "gauge",
        "Frame number of the latest image, -1 before one.",
    ),
    "frame_rate": ("frame_rate_hz", "gauge", "Frames received per second, about the last second."),
    "data_rate": ("data_rate_bytes_per_second", "gauge", "Wire bytes received per second."),
    "compression_ratio": (
        "compression_ratio",
        "gauge",
        "Raw bytes over stored bytes in the series.",
    ),
    "queue_depth": ("queue_depth", "gauge", "Messages decoded but not yet written."),
    "connected": ("connected", "gauge", "1 while connected to the detector stream."),
    "in_series": ("in_series", "gauge", "1 between a series header and its series_end."),
    "series_complete": ("series_complete", "gauge", "1 when the last series ended complete."),
    "alarm": ("alarm", "gauge", "1 when frames were missing, invalid, discarded or dropped."),
}


def render(snapshot: StatsSnapshot, receiver: str) -> str:
    labels = _labels(receiver=receiver)
    lines: list[str] = []

    def metric(name: str, kind: str, text: str, samples: list[Sample]) -> None:
        full = f"{PREFIX}_{name}"
        lines.extend((f"# HELP {full} {text}", f"# TYPE {full} {kind}"))
        lines.extend(f"{full}{where} {_number(value)}" for where, value in samples)

    metric(
        "info",
        "gauge",
        "Detector class, upstream and secondary port of the receiver.",
        [
            (
                _labels(
                    receiver=receiver,
                    detector_class=snapshot.detector_class,
                    upstream=",".join(snapshot.upstream),
                    secondary_port=str(snapshot.secondary_port),
                ),
                1,
            )
        ],
    )
    metric(
        "state",
        "gauge",
        "1 for the state the receiver is in (idle, running, error).",
        [
            (_labels(receiver=receiver, state=state), snapshot.state == state)
            for state in (IDLE, RUNNING, ERROR)
        ],
    )
    for field, (name, kind, text) in SCALARS.items():
        metric(name, kind, text, [(labels, getattr(snapshot, field))])
    for field in SERIES_COUNTERS:
        metric(
            f"series_{field}",
            "gauge",
            f"{field.replace('_', ' ').capitalize()} in the current or last series.",
            [(labels, getattr(snapshot, field))],
        )
    return "\n".join(lines) + "\n"


def _labels(**labels: str) -> str:
    escaped = (f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float | int | bool) -> str:
    number = float(value)  # bools become 1.0 / 0.0
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
