"""Measurement group set-up for a receiver channel: what neither spock's ``set_meas_conf`` nor
the channel itself can set.

A 2D channel's ``data_type`` in the measurement group is float64 unless set, and the NeXus
recorder types the scan's virtual dataset by it: frames read through it would be converted.
"""

from __future__ import annotations

import json
import logging

import tango

log = logging.getLogger(__name__)


def enable_references(mg: str, channel: str, dtype: str) -> None:
    """Turn on value references for ``channel`` (its label) in measurement group ``mg`` and
    declare its frames' ``dtype`` (the receiver's ``frame_dtype``)."""
    proxy = tango.DeviceProxy(mg)
    config = json.loads(proxy.Configuration)
    found = [
        settings
        for ctrl in config["controllers"].values()
        for settings in ctrl["channels"].values()
        if settings["label"] == channel
    ]
    if not found:
        raise ValueError(f"measurement group {mg} has no channel {channel!r}")
    for settings in found:
        settings.update(value_ref_enabled=True, data_type=dtype)
    proxy.Configuration = json.dumps(config)
    log.info("%s: %s references enabled, frames %s", mg, channel, dtype)
