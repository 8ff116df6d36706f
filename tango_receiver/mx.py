"""Where each wire form's header says what an NXmx file needs: one table per wire form.

A table maps a *fact* (the names below, in SI units but for the beam centre in pixels and the
wavelength in angstrom, as NXmx writes them) to its path in the series metadata: dict keys, list
indexes, and ``*`` for the first value of a per-channel map (stream v2 ``threshold_energy``,
``pixel_mask``). ``engine/nxmx.py`` turns facts into NXmx fields; a detector class names its
table (``Detector.mx_keys``), so a wire form's key names live in one place, beside the others.
The README's "NXmx" table lists, per field, the key of each wire form and the placeholder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KeyPath = tuple[str | int, ...]
Table = Mapping[str, KeyPath]

#: sample axes whose start and per-frame increment a DECTRIS stream reports
AXES = ("omega", "phi", "chi", "kappa", "two_theta")

_V1_SAME = (
    "description",
    "sensor_material",
    "sensor_thickness",
    "x_pixel_size",
    "y_pixel_size",
    "beam_center_x",
    "beam_center_y",
    "wavelength",
    "count_time",
    "frame_time",
    "bit_depth_readout",
    "threshold_energy",
    "pixel_mask_applied",
    "countrate_correction_applied",
)

#: stream v1 (SIMPLON 1.8): the ``dheader-1.0`` config part and, with ``header_detail: all``,
#: the flatfield and pixel mask (``Eiger.decode_v1_header`` puts them there)
STREAM_V1: Table = {
    **{fact: ("config", fact) for fact in _V1_SAME},
    "serial": ("config", "detector_number"),
    "distance": ("config", "detector_distance"),
    "energy": ("config", "photon_energy"),
    "readout_time": ("config", "detector_readout_time"),
    "saturation_value": ("config", "countrate_correction_count_cutoff"),
    "start_time": ("config", "data_collection_date"),
    "flatfield_applied": ("config", "flatfield_correction_applied"),
    "virtual_pixel_correction_applied": ("config", "virtual_pixel_correction_applied"),
    "flatfield": ("flatfield",),
    "pixel_mask": ("pixel_mask",),
    **{
        f"{axis}_{what}": ("config", f"{axis}_{what}")
        for axis in AXES
        for what in ("start", "increment")
    },
}

#: stream v2: the ``start`` message (``user_data`` the beamline's keys, as SLS sends them)
STREAM_V2: Table = {
    **{
        fact: (fact,)
        for fact in (
            "sensor_material",
            "sensor_thickness",
            "beam_center_x",
            "beam_center_y",
            "count_time",
            "frame_time",
            "bit_depth_readout",
            "saturation_value",
        )
    },
    "description": ("detector_description",),
    "serial": ("detector_serial_number",),
    "x_pixel_size": ("pixel_size_x",),
    "y_pixel_size": ("pixel_size_y",),
    "distance": ("detector_distance",),
    "wavelength": ("incident_wavelength",),
    "energy": ("incident_energy",),
    "readout_time": ("detector_readout_time",),
    "threshold_energy": ("threshold_energy", "*"),
    "start_time": ("arm_date",),
    "flatfield": ("flatfield", "*"),
    "pixel_mask": ("pixel_mask", "*"),
    "flatfield_applied": ("flatfield_enabled",),
    "pixel_mask_applied": ("pixel_mask_enabled",),
    "countrate_correction_applied": ("countrate_correction_enabled",),
    "virtual_pixel_correction_applied": ("virtual_pixel_interpolation_enabled",),
    **{fact: ("user_data", fact) for fact in ("instrument_name", "source_name", "sample_name")},
    "instrument_short_name": ("user_data", "instrument_name_short"),
    "source_short_name": ("user_data", "source_name_short"),
    **{
        f"{axis}_{what}": ("goniometer", axis, what)
        for axis in AXES
        for what in ("start", "increment")
    },
}

#: Pilatus: the CBF mini-header of the series' first frame, as ``codecs.cbf.mini_header``
#: reads it (the Pilatus decoder puts it under ``cbf``, and ``rotated_clockwise`` beside it
#: when the frames are stored turned); the oscillation is taken as omega's
PILATUS_CBF: Table = {
    "description": ("cbf", "Detector"),
    "serial": ("cbf", "serial"),
    "sensor_material": ("cbf", "sensor", 0),
    "sensor_thickness": ("cbf", "sensor", 1),
    "x_pixel_size": ("cbf", "Pixel_size", 0),
    "y_pixel_size": ("cbf", "Pixel_size", 1),
    "beam_center_x": ("cbf", "Beam_xy", 0),
    "beam_center_y": ("cbf", "Beam_xy", 1),
    "distance": ("cbf", "Detector_distance"),
    "wavelength": ("cbf", "Wavelength"),
    "count_time": ("cbf", "Exposure_time"),
    "frame_time": ("cbf", "Exposure_period"),
    "saturation_value": ("cbf", "Count_cutoff"),
    "threshold_energy": ("cbf", "Threshold_setting"),
    "start_time": ("cbf", "timestamp"),
    "rotated_clockwise": ("rotated_clockwise",),
    "omega_start": ("cbf", "Start_angle"),
    "omega_increment": ("cbf", "Angle_increment"),
}


def read_facts(metadata: Mapping[str, Any], table: Table) -> dict[str, Any]:
    """The facts ``table`` finds in ``metadata``; a path that leads nowhere is left out."""
    facts = {}
    for fact, path in table.items():
        value = _follow(metadata, path)
        if value is not None:
            facts[fact] = value
    return facts


def _follow(value: Any, path: KeyPath) -> Any:
    for step in path:
        if step == "*" and isinstance(value, Mapping):
            value = next(iter(value.values()), None)
        elif isinstance(step, int) and isinstance(value, (list, tuple)):
            value = value[step] if -len(value) <= step < len(value) else None
        elif isinstance(step, str) and isinstance(value, Mapping):
            value = value.get(step)
        else:
            return None
    return value
