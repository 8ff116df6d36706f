"""One Tango device server process per receiver: ``TangoReceiver/<name>`` serving one
``ReceiverDevice`` named ``tango_receiver/<class>/<name>``.

With a database (TANGO_HOST) the device takes its properties from it, so registering
``config_file`` + ``receiver_name`` (or every key as its own property) is all a deployment needs.
Without one (``nodb``) the properties go into a Tango file database beside the process, which
is how Tango itself gives properties to a ``-nodb`` server.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tango
import tango.server

from ..cli import setup_logging
from ..config import ConfigError, ReceiverConfig, load_receiver
from .device import ReceiverDevice

log = logging.getLogger(__name__)

SERVER = "TangoReceiver"
DEVICE_CLASS = ReceiverDevice.__name__


def device_name(config: ReceiverConfig) -> str:
    return f"tango_receiver/{config.detector_class}/{config.name}".lower()


def server_instance(name: str) -> str:
    return f"{SERVER}/{name}"


def register_device(db: tango.Database, server: str, device: str,
                    properties: Mapping[str, Any]) -> None:
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


def write_file_database(path: Path, server: str, device: str,
                        properties: Mapping[str, Any]) -> None:
    """The Tango file database a ``-file=`` server reads its device list and properties from."""
    path.write_text(f"{server}/DEVICE/{DEVICE_CLASS}: \"{device}\"\n")
    tango.Database(str(path)).put_device_property(
        device, {k: _property_value(v) for k, v in properties.items()})


def serve(config_path: str | Path, name: str, *, nodb: bool = False, register: bool = False,
          port: int | None = None, host: str | None = None,
          argv_extra: Sequence[str] = ()) -> int:
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
                raise ConfigError(f"{config_path}: receiver {name!r}: a -nodb device server "
                                  f"needs a fixed --port, or no client can find it")
            file_db = Path(tmp) / "devices.db"
            write_file_database(file_db, server, device, properties)
            args += [f"-file={file_db}"]  # Tango: -nodb [-dlist] or -file, not both
            log.info("%s: no database; clients use tango://%s:%d/%s#dbase=no", device,
                     host or "<this host>", port, device)
        elif register:
            register_device(tango.Database(), server, device, properties)
        tango.server.run((ReceiverDevice,), args=args + list(argv_extra))
    return 0


class ServerProcess:
    """``serve`` in a child process, for the demo and the integration tests: started, waited
    for until its device answers, always stopped. Against the database at ``tango_host``, or
    without one on ``nodb_port``."""

    def __init__(self, config_path: str | Path, name: str, log_path: Path, *,
                 tango_host: str | None = None, nodb_port: int | None = None,
                 host: str = "127.0.0.1", timeout_s: float = 30.0) -> None:
        if (tango_host is None) == (nodb_port is None):
            raise ValueError("give either tango_host (a database) or nodb_port (no database)")
        self.config_path, self.name, self.log_path = Path(config_path), name, log_path
        self.tango_host, self.nodb_port, self.host = tango_host, nodb_port, host
        self.timeout_s = timeout_s
        device = device_name(load_receiver(config_path, name))
        self.url = (f"tango://{tango_host}/{device}" if tango_host else
                    f"tango://{host}:{nodb_port}/{device}#dbase=no")
        self.process: subprocess.Popen | None = None

    def start(self) -> tango.DeviceProxy:
        command = [sys.executable, "-m", "tango_receiver.tango.server", str(self.config_path),
                   self.name, "--host", self.host]
        env = dict(os.environ)
        if self.tango_host:
            env["TANGO_HOST"] = self.tango_host
        else:
            command += ["--nodb", "--port", str(self.nodb_port)]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            env=env)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"device server {self.name} exited with "
                                   f"{self.process.returncode}; see {self.log_path}")
            try:
                proxy = tango.DeviceProxy(self.url)
                proxy.ping()
                return proxy
            except tango.DevFailed as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.url} did not answer in {self.timeout_s} s: "
                                       f"{exc.args[0].desc}; see {self.log_path}") from None
            time.sleep(0.1)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (the device closes its file), SIGKILL if it does not go; the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.error("device server %s ignored SIGTERM for %s s; killing it; see %s",
                          self.name, timeout_s, self.log_path)
                process.kill()
                process.wait(timeout_s)
        return process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tango-receiver serve", description=__doc__)
    parser.add_argument("config", help="detectors.yaml")
    parser.add_argument("name", help="receiver name (top-level key)")
    parser.add_argument("--register", action="store_true",
                        help="add the device and its config_file/receiver_name properties to "
                             "the database at TANGO_HOST first")
    parser.add_argument("--nodb", action="store_true", help="run without a Tango database")
    parser.add_argument("--port", type=int, help="device server port (required with --nodb)")
    parser.add_argument("--host", help="address to listen on and publish (e.g. 127.0.0.1)")
    args, extra = parser.parse_known_args(argv)
    setup_logging()
    try:
        return serve(args.config, args.name, nodb=args.nodb, register=args.register,
                     port=args.port, host=args.host, argv_extra=extra)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
