"""Where a receiver's device lives in Tango: its names, and its entry in a database (a real one,
or the file database a ``-file=`` server reads, which is how Tango gives a ``-nodb`` server its
properties)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tango

from ..receiver_config import ReceiverConfig
from .device import ReceiverDevice

log = logging.getLogger(__name__)

SERVER = "TangoReceiver"
DEVICE_CLASS = ReceiverDevice.__name__


def device_name(config: ReceiverConfig) -> str:
    return f"tango_receiver/{config.detector_class}/{config.name}".lower()


def server_instance(name: str) -> str:
    return f"{SERVER}/{name}"


def register_device(
    db: tango.Database, server: str, device: str, properties: Mapping[str, Any]
) -> None:
    """Add (or update) the device of ``server`` ('TangoReceiver/<name>') and its properties."""
    info = tango.DbDevInfo()
    info.name, info._class, info.server = device, DEVICE_CLASS, server
    db.add_device(info)
    if properties:
        db.put_device_property(device, {k: _property_value(v) for k, v in properties.items()})
    log.info("registered %s (%s) with %s", device, server, ", ".join(properties) or "no properties")


def _property_value(value: Any) -> Any:
    """Tango stores strings or sequences of strings; Paths and numbers are written as text."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def write_file_database(
    path: Path, server: str, device: str, properties: Mapping[str, Any]
) -> None:
    """The Tango file database a ``-file=`` server reads its device list and properties from."""
    path.write_text(f'{server}/DEVICE/{DEVICE_CLASS}: "{device}"\n')
    tango.Database(str(path)).put_device_property(
        device, {k: _property_value(v) for k, v in properties.items()}
    )
