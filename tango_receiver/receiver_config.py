"""One detectors.yaml entry as typed fields: what each key is, its default and its range.

Checks that need the detector classes (class, pipeline, options, mask) are made by ``config.py``
when an entry is loaded; this module knows no detector, so the detector classes can be typed by it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .rois import RoiTable, parse_table

#: Where receivers may write when an entry names no ``write_roots`` (existing deployments).
DEFAULT_WRITE_ROOTS_ENV = "TANGO_RECEIVER_WRITE_ROOTS"
DEFAULT_WRITE_ROOT = "/data"

#: Older key -> this project's key. Values are mapped unchanged.
LEGACY_KEYS = {"dcu_host_purple": "host", "dcu_port_purple": "port"}


class Endpoint(BaseModel):
    """One upstream PUSH socket of the detector; ``port`` None means the detector's default."""

    model_config = ConfigDict(frozen=True)
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)


class GoniometerAxis(BaseModel):
    """One sample axis. ``start`` / ``increment`` (per frame) override what the stream says."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    vector: tuple[float, float, float]
    type: Literal["rotation", "translation"] = "rotation"
    start: float | None = None
    increment: float | None = None


class NexusConfig(BaseModel):
    """What an MX file needs and no stream says (README "NXmx"); every key is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    instrument_name: str | None = None
    instrument_short_name: str | None = None
    source_name: str | None = None
    source_short_name: str | None = None
    source_type: str | None = None  # NXsource/type, e.g. "Synchrotron X-ray Source"
    sample_name: str | None = None
    time_zone: str | None = None  # NXinstrument/time_zone, e.g. "+02:00"
    goniometer: list[GoniometerAxis] = Field(default_factory=list)  # outermost first


def default_write_roots() -> list[Path]:
    env = os.environ.get(DEFAULT_WRITE_ROOTS_ENV)
    return [Path(p) for p in env.split(os.pathsep) if p] if env else [Path(DEFAULT_WRITE_ROOT)]


class ReceiverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    name: str
    detector_class: str = Field(default="Detector", alias="class")
    upstream: list[Endpoint] = Field(min_length=1)
    nworkers: int = Field(default=1, ge=1, le=64)
    api_host: str = "0.0.0.0"
    api_port: int = Field(default=5000, ge=0, le=65535)
    data_host: str = "0.0.0.0"
    data_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port, reported in the stats
    dset_name: str = "/entry/instrument/detector/data"
    write_roots: list[Path] = Field(default_factory=default_write_roots)
    # transformation of the frames, run in the decoder workers
    pipeline: str | None = None
    # store uncompressed frames bitshuffle-LZ4; None: the class's default (``compress_default``,
    # what existing deployments' entries without the key stored: raw, but Pilatus compressed)
    compress: bool | None = None
    verify_chunks: bool = False  # also decompress each pre-compressed chunk (Internals.md)
    fast_lane: bool = True  # v1, internal: a running series' frames through the compiled lane
    rotate: bool = False
    mask: list[list[int]] | None = None
    tot: Path | None = None
    # engine tuning
    gap_timeout_s: float = Field(default=2.0, gt=0)
    silence_timeout_s: float = Field(default=30.0, gt=0)  # open series, no data: say so
    flush_interval_s: float = Field(default=1.0, gt=0)
    forward_hwm: int = Field(default=65536, ge=1)  # messages; the bytes: forwarder.FORWARD_BYTES
    queue_mb: int = Field(default=128, ge=1)  # decoded frames waiting for the writer
    # scale-out: one of N receivers pulling from one upstream writes <stem><file_suffix>.h5 and
    # expects msg_number gaps (those frames went to the other receivers); see scaleout/
    file_suffix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$")
    # what the detector sends, where the simulator and docs need it
    shape: list[int] | None = None
    dtype: str | None = None
    # NXmx (Eiger, DectrisStream2, Pilatus): what the stream cannot know
    nexus: NexusConfig | None = None
    # "dectris": <name>_master.h5 and <name>_data_000001.h5, ... of images_per_file frames each
    layout: Literal["single", "dectris"] = "single"
    images_per_file: int = Field(default=1000, ge=1)
    # regions counted per frame (rois.py); a JSON string is taken too (a Tango property)
    rois: RoiTable = Field(default_factory=dict)
    roi_cpu: float = Field(default=0.1, gt=0, le=64)  # cores ROI counting may use at most

    def frames_in(self, nbytes: int) -> int | None:
        """How many frames (at least 2) fit in ``nbytes``, where the entry says how big a raw
        frame is (``shape`` x ``dtype``); None where it does not."""
        if not (self.shape and self.dtype):
            return None
        frame = int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize
        return max(2, nbytes // max(frame, 1))

    @model_validator(mode="before")
    @classmethod
    def _map_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in LEGACY_KEYS.items():
            if old in data:
                data.setdefault(new, data.pop(old))
        host, port = data.pop("host", None), data.pop("port", None)
        if host is not None and "upstream" not in data:
            data["upstream"] = _endpoints(host, port)
        return data

    @field_validator("upstream", mode="before")
    @classmethod
    def _parse_upstream(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            value = [value]
        return [_endpoint(v) if isinstance(v, str) else v for v in value]

    @field_validator("rois", mode="before")
    @classmethod
    def _rois_from_json(cls, value: Any) -> Any:
        return parse_table(value) if isinstance(value, str) else value

    @field_validator("dset_name")
    @classmethod
    def _absolute_dataset(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError("must be an absolute HDF5 path such as /entry/instrument/eiger/data")
        return value

    @field_validator("write_roots")
    @classmethod
    def _absolute_roots(cls, value: list[Path]) -> list[Path]:
        for root in value:
            if not root.is_absolute():
                raise ValueError(f"write root {str(root)!r} must be an absolute directory")
        return value


def _endpoints(host: Any, port: Any) -> list[dict[str, Any]]:
    hosts = host if isinstance(host, list) else [host]
    ports = port if isinstance(port, list) else [port] * len(hosts)
    if len(ports) != len(hosts):
        raise ValueError(f"{len(hosts)} hosts but {len(ports)} ports")
    return [{"host": h, "port": p} for h, p in zip(hosts, ports, strict=False)]


def _endpoint(text: str) -> dict[str, Any]:
    """'tcp://host:port' or 'host:port' or 'host'."""
    text = text.removeprefix("tcp://")
    host, sep, port = text.rpartition(":")
    if not sep:
        return {"host": text, "port": None}
    return {"host": host, "port": int(port) if port.isdigit() else port}
