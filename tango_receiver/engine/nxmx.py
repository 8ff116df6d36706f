"""NXmx: the fields MX software (DIALS, XDS with durin/neggia, autoPROC) reads, written once per
file at its first frame, when the frame's shape and (Pilatus) the CBF mini-header are known.

The values come from the series metadata through the detector class's table (``mx.py``), from
the entry's ``nexus:`` block for what no stream knows, and otherwise are the placeholders
below, each missing field named once in the log per receiver: a series is never refused for
odd metadata. A field that is already there (a header field linked into the detector group, an
earlier series of an appended file) is kept and given its ``@units``: one dataset serves both;
a header field's link to a group (a per-channel map) gives its name to the NXmx field. The
geometry follows DECTRIS' files (McStas axes: z along the beam, y up): the detector
translated by ``distance`` along z; the module offset so that pixel ``(beam_center_x,
beam_center_y)`` sits on the beam; fast pixels along -x, slow along -y.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import h5py
import numpy as np

from ..mx import Table, read_facts
from ..receiver_config import GoniometerAxis, NexusConfig

log = logging.getLogger(__name__)

UNKNOWN = "unknown"  # text placeholder (instrument, source, sample name; sensor material)
UNKNOWN_NUMBER = math.nan  # number placeholder (wavelength, sensor thickness, pixel size)
HC_EV_ANGSTROM = 12398.419843320026  # wavelength [A] = HC / energy [eV]
SENSOR_MATERIALS = {
    "silicon": "Si",
    "cadmium telluride": "CdTe",
    "germanium": "Ge",
    "gallium arsenide": "GaAs",
}

#: detector fields written when the stream gives them: fact -> (NXmx field, units)
DETECTOR_FIELDS: dict[str, tuple[str, str | None]] = {
    "description": ("description", None),
    "serial": ("serial_number", None),
    "x_pixel_size": ("x_pixel_size", "m"),
    "y_pixel_size": ("y_pixel_size", "m"),
    "beam_center_x": ("beam_center_x", "pixel"),
    "beam_center_y": ("beam_center_y", "pixel"),
    "distance": ("distance", "m"),
    "count_time": ("count_time", "s"),
    "frame_time": ("frame_time", "s"),
    "readout_time": ("detector_readout_time", "s"),
    "bit_depth_readout": ("bit_depth_readout", None),
    "saturation_value": ("saturation_value", None),
    "threshold_energy": ("threshold_energy", "eV"),
    "flatfield_applied": ("flatfield_applied", None),
    "pixel_mask_applied": ("pixel_mask_applied", None),
    "countrate_correction_applied": ("countrate_correction_applied", None),
    "virtual_pixel_correction_applied": ("virtual_pixel_interpolation_applied", None),
}
#: fast and slow pixel directions (McStas axes) of frames as read out, and turned clockwise
UPRIGHT = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
ROTATED = ((0.0, 1.0, 0.0), (-1.0, 0.0, 0.0))
#: every field this module may write into the detector group
FIELD_NAMES = (
    *(name for name, _ in DETECTOR_FIELDS.values()),
    "sensor_material",
    "sensor_thickness",
    "pixel_mask",
    "flatfield",
    "distance_derived",
    "depends_on",
)
TEXT_FACTS = frozenset(
    {
        "description",
        "serial",
        "sensor_material",
        "instrument_name",
        "instrument_short_name",
        "source_name",
        "source_short_name",
        "sample_name",
    }
)
FLAG_FACTS = frozenset(
    {*(f for f in DETECTOR_FIELDS if f.endswith("_applied")), "rotated_clockwise"}
)


class Nxmx:
    """One receiver's NXmx writer: its class's key table and its entry's ``nexus`` block.

    Kept for the receiver's life, so that a field missing from every series is logged once."""

    def __init__(self, table: Table, nexus: NexusConfig, frame_times: bool = False) -> None:
        self.table = table
        self.nexus = nexus
        #: per-frame times in every file, those of frames that came without them NaN, so that
        #: a file's layout does not depend on whether its first frame took the compiled lane
        self.frame_times = frame_times
        self._told: set[str] = set()

    def write(
        self,
        det: h5py.Group,
        metadata: Mapping[str, Any],
        frame: tuple[int, ...],
        nimages: int | None,
        now: datetime | None = None,
    ) -> None:
        """NXmx around the detector group ``det`` of a file whose first frame has ``frame``
        (the shape of one plane); ``nimages`` as the header announced it. A failure is logged,
        never raised: the frames matter more than their description."""
        try:
            self._write(det, metadata, frame, nimages, now)
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            log.error("%s: NXmx fields not written: %s", det.file.filename, exc)

    def _write(
        self,
        det: h5py.Group,
        metadata: Mapping[str, Any],
        frame: tuple[int, ...],
        nimages: int | None,
        now: datetime | None,
    ) -> None:
        facts, odd = _checked(read_facts(metadata, self.table), frame)
        facts = _as_stored(facts, frame)
        missing: list[str] = []
        entry = det.file["entry"]
        _field(entry, "definition", "NXmx")
        start = facts.get("start_time") or (now or datetime.now(UTC)).isoformat()
        _field(entry, "start_time", start)
        _field(entry, "end_time_estimated", _end_estimate(start, facts.get("frame_time"), nimages))
        self._instrument(entry, facts, missing)
        self._detector(det, facts, frame, missing)
        self._sample(entry, facts, nimages, missing)
        blocked = [det[n].name for n in FIELD_NAMES if isinstance(det.get(n), h5py.Group)]
        self._tell(odd, "%s: metadata not usable for NXmx, left out: %s", det.file.filename)
        self._tell(
            missing,
            "%s: the stream and the entry's nexus block give no %s: wrote the "
            "NXmx placeholders (README, NXmx)",
            det.file.filename,
        )
        self._tell(
            blocked, "%s: groups where NXmx has fields, left as they are: %s", det.file.filename
        )

    def _tell(self, items: list[str], text: str, filename: str) -> None:
        """Log ``items`` once in the receiver's life: the same metadata comes every series."""
        if items and not self._told.issuperset(items):
            self._told.update(items)
            log.warning(text, filename, ", ".join(items))

    def _named(self, facts: dict[str, Any], key: str, missing: list[str]) -> str:
        value = getattr(self.nexus, key) or facts.get(key)
        if value is None:
            missing.append(key)
        return value or UNKNOWN

    def _name(
        self, group: h5py.Group, what: str, facts: dict[str, Any], missing: list[str]
    ) -> None:
        """``name`` (``<what>_name``) and its ``short_name`` attribute, from the entry's
        ``nexus`` block or the stream."""
        name = _field(group, "name", self._named(facts, f"{what}_name", missing))
        short = getattr(self.nexus, f"{what}_short_name") or facts.get(f"{what}_short_name")
        if short:
            name.attrs.setdefault("short_name", short)

    def _instrument(self, entry: h5py.Group, facts: dict[str, Any], missing: list[str]) -> None:
        instrument = entry["instrument"]
        self._name(instrument, "instrument", facts, missing)
        if self.nexus.time_zone:
            _field(instrument, "time_zone", self.nexus.time_zone)
        source = _group(entry, "source", "NXsource")
        self._name(source, "source", facts, missing)
        if self.nexus.source_type:
            _field(source, "type", self.nexus.source_type)
        beam = _group(instrument, "beam", "NXbeam")
        wavelength = facts.get("wavelength")
        if wavelength is None and facts.get("energy"):
            wavelength = HC_EV_ANGSTROM / facts["energy"]
        if wavelength is None:
            missing.append("incident_wavelength")
        _field(
            beam,
            "incident_wavelength",
            UNKNOWN_NUMBER if wavelength is None else wavelength,
            "angstrom",
        )
        if "energy" in facts:
            _field(beam, "incident_energy", facts["energy"], "eV")

    def _detector(
        self, det: h5py.Group, facts: dict[str, Any], frame: tuple[int, ...], missing: list[str]
    ) -> None:
        for fact, (name, units) in DETECTOR_FIELDS.items():
            if fact in facts:
                _field(det, name, facts[fact], units)
        for fact, units in (("sensor_material", None), ("sensor_thickness", "m")):
            if fact not in facts:
                missing.append(fact)
            _field(det, fact, facts.get(fact, UNKNOWN if units is None else UNKNOWN_NUMBER), units)
        for fact in ("pixel_mask", "flatfield"):
            if fact in facts:
                _array(det, fact, facts[fact], self.table[fact])
        if "distance" in facts:
            _field(det, "distance_derived", False)
        _geometry(det, facts, frame, missing)

    def _sample(
        self, entry: h5py.Group, facts: dict[str, Any], nimages: int | None, missing: list[str]
    ) -> None:
        sample = _group(entry, "sample", "NXsample")
        _field(sample, "name", self._named(facts, "sample_name", missing))
        axes = self.nexus.goniometer
        if not axes:
            missing.append("goniometer")
            _field(sample, "depends_on", ".")
            return
        chain = _group(sample, "transformations", "NXtransformations")
        outer = "."
        for axis in axes:
            values = _positions(axis, facts, nimages, missing)
            ds = _field(chain, axis.name, values, "deg" if axis.type == "rotation" else "m")
            _transformation(ds, axis.type, axis.vector, outer)
            outer = ds.name
        _field(sample, "depends_on", outer)


def _checked(facts: dict[str, Any], frame: tuple[int, ...]) -> tuple[dict[str, Any], list[str]]:
    """The facts whose value has the kind NXmx needs, and the odd ones (``fact = value``):
    those are dropped, so a placeholder or nothing is written."""
    good: dict[str, Any] = {}
    odd: list[str] = []
    for fact, value in facts.items():
        if fact == "start_time":
            ok = isinstance(value, str) and _iso_time(value)
        elif fact in TEXT_FACTS:
            ok = isinstance(value, str) and bool(value.strip())
        elif fact in FLAG_FACTS:
            ok = isinstance(value, (bool, np.bool_))
        elif fact in ("pixel_mask", "flatfield"):
            ok = (
                isinstance(value, np.ndarray)
                and value.shape == frame[-2:]
                and value.dtype.kind in "biuf"
            )
        else:
            ok = (
                isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, (bool, np.bool_))
                and math.isfinite(value)
            )
        if ok:
            good[fact] = value
        else:
            odd.append(f"{fact} = {value!r:.80}")
    if "sensor_material" in good:
        good["sensor_material"] = SENSOR_MATERIALS.get(
            good["sensor_material"].lower(), good["sensor_material"]
        )
    return good, odd


def _as_stored(facts: dict[str, Any], frame: tuple[int, ...]) -> dict[str, Any]:
    """Beam centre and pixel sizes of the frames as stored: a Pilatus frame turned 90 degrees
    clockwise (``rotate``) has the detector's columns as rows, its rows reversed as columns,
    while the stream describes the detector as it reads out."""
    if not facts.get("rotated_clockwise"):
        return facts
    turned = dict(facts)
    turned.pop("x_pixel_size", None)
    turned.pop("y_pixel_size", None)
    turned.pop("beam_center_x", None)
    turned.pop("beam_center_y", None)
    if "y_pixel_size" in facts:
        turned["x_pixel_size"] = facts["y_pixel_size"]
    if "x_pixel_size" in facts:
        turned["y_pixel_size"] = facts["x_pixel_size"]
    if "beam_center_x" in facts and "beam_center_y" in facts:
        turned["beam_center_x"] = frame[-1] - 1 - facts["beam_center_y"]
        turned["beam_center_y"] = facts["beam_center_x"]
    return turned


def _geometry(
    det: h5py.Group, facts: dict[str, Any], frame: tuple[int, ...], missing: list[str]
) -> None:
    """Detector translation (``distance`` along the beam), one NXdetector_module over the whole
    frame, its offset to the beam centre and its pixel directions, chained by ``depends_on``."""
    outer = "."
    if "distance" in facts:
        chain = _group(det, "transformations", "NXtransformations")
        ds = _field(chain, "translation", facts["distance"], "m")
        _transformation(ds, "translation", (0.0, 0.0, 1.0), outer)
        outer = ds.name
    _field(det, "depends_on", outer)
    module = _group(det, "module", "NXdetector_module")
    rows, cols = frame[-2:]
    _field(module, "data_origin", np.array([0, 0], dtype=np.int32))
    _field(module, "data_size", np.array([rows, cols], dtype=np.int32))
    _field(module, "data_stride", np.array([1, 1], dtype=np.int32))
    pixel = []
    for fact in ("x_pixel_size", "y_pixel_size"):
        if fact not in facts:
            missing.append(fact)
        pixel.append(facts.get(fact, UNKNOWN_NUMBER))
    fast, slow = ROTATED if facts.get("rotated_clockwise") else UPRIGHT
    if "beam_center_x" in facts and "beam_center_y" in facts:
        # the first pixel sits where the beam-centre pixel is moved back onto the beam
        offset = -(
            facts["beam_center_x"] * pixel[0] * np.array(fast)
            + facts["beam_center_y"] * pixel[1] * np.array(slow)
        )
        length = float(np.linalg.norm(offset))
        if math.isfinite(length):
            ds = _field(module, "module_offset", length, "m")
            _transformation(
                ds, "translation", tuple(offset / length) if length else (1.0, 0.0, 0.0), outer
            )
            outer = ds.name
    else:
        missing.append("beam_center")
    for name, size, vector in (
        ("fast_pixel_direction", pixel[0], fast),
        ("slow_pixel_direction", pixel[1], slow),
    ):
        _transformation(_field(module, name, size, "m"), "translation", vector, outer)


def _positions(
    axis: GoniometerAxis, facts: dict[str, Any], nimages: int | None, missing: list[str]
) -> np.ndarray:
    """The axis' position at every frame: the entry's start and increment, else the stream's."""
    start = axis.start if axis.start is not None else facts.get(f"{axis.name}_start")
    step = axis.increment if axis.increment is not None else facts.get(f"{axis.name}_increment")
    if start is None:
        missing.append(f"{axis.name} start")
    count = nimages if step and nimages else 1
    return (start or 0.0) + (step or 0.0) * np.arange(count, dtype=np.float64)


def _iso_time(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 time, as NX_DATE_TIME wants it."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _end_estimate(start: str, frame_time: float | None, nimages: int | None) -> str:
    """``start_time`` plus the series' length where frame time and count say it, else start."""
    if not (frame_time and nimages):
        return start
    try:
        began = datetime.fromisoformat(start)
    except ValueError:
        return start
    return (began + timedelta(seconds=frame_time * nimages)).isoformat()


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.require_group(name)
    group.attrs.setdefault("NX_class", nx_class)
    return group


def _field(group: h5py.Group, name: str, value: Any, units: str | None = None) -> Any:
    """The dataset ``name``, created with ``value`` unless it exists; ``@units`` either way
    (an existing one is kept). A header field linked there that is no dataset (a per-channel
    map) gives way; any other group of that name is left as it is (``Nxmx.write`` names it)."""
    if name in group and not _yields(group, name):
        found = group[name]
        if isinstance(found, h5py.Dataset) and units:
            found.attrs.setdefault("units", units)
        return found
    if isinstance(value, str):
        ds = group.create_dataset(name, data=value, dtype=h5py.string_dtype())
    else:
        ds = group.create_dataset(name, data=value)
    if units:
        ds.attrs["units"] = units
    return ds


def _yields(group: h5py.Group, name: str) -> bool:
    """Remove ``name`` where it is the soft link by which the header's field ``name`` is shown
    in the detector group (writer.link_fields) and the field is no dataset: NXmx needs the name
    for a field, and the header's copy stays under ``metadata/``."""
    link = group.get(name, getlink=True)
    if (
        isinstance(link, h5py.SoftLink)
        and "/metadata/" in link.path
        and not isinstance(group.get(name), h5py.Dataset)
    ):
        del group[name]
        return True
    return False


def _transformation(ds: Any, kind: str, vector: tuple[float, ...], depends_on: str) -> None:
    if not isinstance(ds, h5py.Dataset):
        return
    ds.attrs.setdefault("transformation_type", kind)
    ds.attrs.setdefault("vector", np.asarray(vector, dtype=np.float64))
    ds.attrs.setdefault("offset", np.zeros(3))
    ds.attrs.setdefault("depends_on", depends_on)


def _array(det: h5py.Group, name: str, value: np.ndarray, path: tuple[Any, ...]) -> None:
    """A 2-D calibration array: a hard link to its copy in ``metadata/`` where that holds it
    (megabytes for a 4M detector, stored once), else written here."""
    if name in det and not _yields(det, name):
        return  # the header's own array linked there, or an earlier series'
    copy: Any = det.get("metadata")
    for step in path:
        if step == "*" and isinstance(copy, h5py.Group):
            copy = next(iter(copy.values()), None)
        elif isinstance(step, str) and isinstance(copy, h5py.Group):
            copy = copy.get(step)
        else:
            copy = None
    if isinstance(copy, h5py.Dataset) and copy.shape == value.shape:
        det[name] = copy
    else:
        _field(det, name, value)


class FrameTimes:
    """Each frame's exposure start, stop and real time, as NXdetector ``start_time``,
    ``stop_time``, ``real_time`` (s, one value per frame of ``data``), written with
    ``sequence_number`` at every flush. A frame that came without them (stream v1 frames the
    compiled lane took: it does not read ``dconfig``) holds NaN."""

    NAMES = ("start_time", "stop_time", "real_time")
    UNKNOWN = (math.nan, math.nan, math.nan)

    def __init__(self, det: h5py.Group, start: int) -> None:
        self._datasets = []
        for name in self.NAMES:
            ds = det.get(name)
            if not (isinstance(ds, h5py.Dataset) and ds.ndim == 1 and ds.maxshape == (None,)):
                if name in det:  # a header field of that name: the per-frame values win
                    del det[name]
                ds = det.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype="float64",
                    chunks=(4096,),
                    fillvalue=math.nan,
                )
                ds.attrs["units"] = "s"
            self._datasets.append(ds)
        self._next = start  # the data index of the first frame not yet written here
        self._pending: list[tuple[float, float, float]] = []

    def add(self, times: tuple[float, float, float] | None) -> None:
        self._pending.append(times or self.UNKNOWN)

    def add_unknown(self, count: int) -> None:
        self._pending.extend([self.UNKNOWN] * count)

    def write(self) -> None:
        if not self._pending:
            return
        end = self._next + len(self._pending)
        for ds, values in zip(self._datasets, zip(*self._pending, strict=True), strict=True):
            ds.resize(max(end, ds.shape[0]), axis=0)
            ds[self._next : end] = values
        self._next, self._pending = end, []
