"""An embedded Tango database server: pytango-db on sqlite, as a child process.

The demo and the integration tests need a real database (Taurus cannot address a ``#dbase=no``
device) on a machine that runs no Tango service. pytango-db is a real DataBaseds, so everything
registered here would work the same against a facility's database.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import tango

log = logging.getLogger(__name__)

#: Printed by pytango-db once it serves requests, with the port it was given (``--port 0``).
LISTENING = re.compile(r"Database DS listening on: host=(\S+), port=(\d+)\.")
INSTANCE = "2"  # the DataBaseds instance name facilities use: sys/database/2
LAUNCH = "import sys; from databaseds.database import main; sys.exit(main())"


class DatabaseServer:
    """A Tango database server on ``host`` (a free port unless one is given), its sqlite file and
    its log in ``directory``; ``tango_host`` is what clients and device servers put in TANGO_HOST.
    """

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0
    ) -> None:
        self.directory = Path(directory).resolve()
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.sqlite_file = self.directory / "tango_database.db"
        self.log_file = self.directory / "databaseds.log"
        self._process: subprocess.Popen | None = None

    @property
    def tango_host(self) -> str:
        return f"{self.host}:{self.port}"

    def database(self) -> tango.Database:
        return tango.Database(self.host, self.port)

    def start(self) -> DatabaseServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTANGO_DATABASE_NAME=str(self.sqlite_file))
        env.pop("TANGO_HOST", None)  # its own address comes from --host/--port only
        command = [
            sys.executable,
            "-c",
            LAUNCH,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--print-host-port",
            INSTANCE,
        ]
        with open(self.log_file, "wb") as out:
            self._process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            self.port = self._wait_listening()
            self._wait_answering()
        except BaseException:
            self.stop()
            raise
        log.info("Tango database server on %s (sqlite %s)", self.tango_host, self.sqlite_file)
        return self

    def _wait_listening(self) -> int:
        assert self._process is not None  # started
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_file.read_text(errors="replace"))
            if found:
                return int(found.group(2))
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Tango database server exited with {self._process.returncode}"
                    f"; see {self.log_file}:\n{self._log_tail()}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"Tango database server did not start in {self.timeout_s} s; see "
            f"{self.log_file}:\n{self._log_tail()}"
        )

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.database().get_info()
                return
            except tango.DevFailed as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Tango database at {self.tango_host} does not answer: {exc.args[0].desc}"
                    ) from None
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            log.warning("Tango database server %s ignored SIGTERM; killing it", self.tango_host)
            process.kill()
            process.wait(10)

    def __enter__(self) -> DatabaseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
