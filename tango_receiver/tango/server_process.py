"""A receiver's device server in a child process, for the demo and the integration tests."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import tango

from ..config import load_receiver
from .registration import device_name

log = logging.getLogger(__name__)


class ServerProcess:
    """``serve`` in a child process, for the demo and the integration tests: started, waited
    for until its device answers, always stopped. Against the database at ``tango_host``, or
    without one on ``nodb_port``."""

    def __init__(
        self,
        config_path: str | Path,
        name: str,
        log_path: Path,
        *,
        tango_host: str | None = None,
        nodb_port: int | None = None,
        host: str = "127.0.0.1",
        timeout_s: float = 30.0,
    ) -> None:
        if (tango_host is None) == (nodb_port is None):
            raise ValueError("give either tango_host (a database) or nodb_port (no database)")
        self.config_path, self.name, self.log_path = Path(config_path), name, log_path
        self.tango_host, self.nodb_port, self.host = tango_host, nodb_port, host
        self.timeout_s = timeout_s
        device = device_name(load_receiver(config_path, name))
        self.url = (
            f"tango://{tango_host}/{device}"
            if tango_host
            else f"tango://{host}:{nodb_port}/{device}#dbase=no"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> tango.DeviceProxy:
        command = [
            sys.executable,
            "-m",
            "tango_receiver",
            "serve",
            str(self.config_path),
            self.name,
            "--host",
            self.host,
        ]
        env = dict(os.environ)
        if self.tango_host:
            env["TANGO_HOST"] = self.tango_host
        else:
            command += ["--nodb", "--port", str(self.nodb_port)]
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"device server {self.name} exited with "
                    f"{self.process.returncode}; see {self.log_path}"
                )
            try:
                proxy = tango.DeviceProxy(self.url)
                proxy.ping()
                return proxy
            except tango.DevFailed as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self.url} did not answer in {self.timeout_s} s: "
                        f"{exc.args[0].desc}; see {self.log_path}"
                    ) from None
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
                log.error(
                    "device server %s ignored SIGTERM for %s s; killing it; see %s",
                    self.name,
                    timeout_s,
                    self.log_path,
                )
                process.kill()
                process.wait(timeout_s)
        return process.returncode
