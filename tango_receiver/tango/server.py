"""One Tango device server process per receiver: ``TangoReceiver/<name>`` serving one
``ReceiverDevice`` named ``tango_receiver/<class>/<name>``, with the receiver's REST sidecar
beside it in the same process.

With a database (TANGO_HOST) the device takes its properties from it, so registering
``config_file`` + ``receiver_name`` (or every key as its own property) is all a deployment needs.
Without one (``nodb``) the properties go into a Tango file database beside the process.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import tango
import tango.server

from ..api.server import start_sidecar
from ..config import ConfigError, load_receiver
from ..engine.receiver import Receiver
from .device import ReceiverDevice
from .registration import SERVER, device_name, register_device, server_instance, write_file_database

log = logging.getLogger(__name__)


def rest_sidecar(receiver: Receiver) -> Callable[[], None]:
    """The REST sidecar of a receiver the device started; how to stop it. A sidecar that cannot
    start is reported, and Tango clients still get the receiver."""
    try:
        sidecar = start_sidecar(receiver)
    except (OSError, RuntimeError) as exc:
        log.error("%s: REST sidecar not started: %s", receiver.config.name, exc)
        receiver.stats.warn(f"REST sidecar not started: {exc}")
        return lambda: None
    return sidecar.stop


def serve(
    config_path: str | Path,
    name: str,
    *,
    nodb: bool = False,
    register: bool = False,
    port: int | None = None,
    host: str | None = None,
    argv_extra: Sequence[str] = (),
) -> int:
    """Run the device server of receiver ``name`` until SIGINT/SIGTERM (which close the file
    cleanly through the device's delete_device)."""
    config = load_receiver(config_path, name)
    device = device_name(config)
    server = server_instance(name)
    properties = {"config_file": Path(config_path).resolve(), "receiver_name": name}
    args = [SERVER, name]
    if port is not None or host is not None:
        args += ["-ORBendPoint", f"giop:tcp:{host or ''}:{port or 0}"]
    with tempfile.TemporaryDirectory(prefix="tango-receiver-") as tmp:
        if nodb:
            if not port:
                raise ConfigError(
                    f"{config_path}: receiver {name!r}: a -nodb device server "
                    f"needs a fixed --port, or no client can find it"
                )
            file_db = Path(tmp) / "devices.db"
            write_file_database(file_db, server, device, properties)
            args += [f"-file={file_db}"]  # Tango: -nodb [-dlist] or -file, not both
            log.info(
                "%s: no database; clients use tango://%s:%d/%s#dbase=no",
                device,
                host or "<this host>",
                port,
                device,
            )
        elif register:
            register_device(tango.Database(), server, device, properties)
        ReceiverDevice.companions = [rest_sidecar]
        tango.server.run((ReceiverDevice,), args=args + list(argv_extra))
    return 0
