"""Run the REST sidecar beside a receiver, in a background thread of the same process.

The Tango device and the CLI both own the main thread, so uvicorn runs in a thread of its own
(uvicorn leaves signal handling to the main thread when it is not started there). The listening
socket is bound here, before the thread starts: a port already in use fails the caller at once
with the address in the message, and port 0 is resolved to the real port before anyone asks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from ..engine.receiver import Receiver
from .app import create_app

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
#: A browser keeps its polling connection open; shutdown must not wait for it forever.
GRACEFUL_SHUTDOWN_S = 2
#: Where to reach a sidecar that listens on every interface from this machine.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


@dataclass
class Sidecar:
    """A running sidecar: where it listens, and how to stop it."""

    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread
    receiver: Receiver

    @property
    def url(self) -> str:
        host = LOOPBACK.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.receiver.stats.rest_url = ""
        self.server.should_exit = True
        self.thread.join(STOP_TIMEOUT_S)
        if self.thread.is_alive():
            log.warning(
                "REST sidecar on port %d did not stop within %.0f s", self.port, STOP_TIMEOUT_S
            )

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sidecar(receiver: Receiver, host: str | None = None, port: int | None = None) -> Sidecar:
    """Serve ``receiver`` over HTTP; host and port default to the receiver's ``api_host`` and
    ``api_port``; port 0 picks a free port, reported in ``Sidecar.port``."""
    name = receiver.config.name
    host = receiver.config.api_host if host is None else host
    port = receiver.config.api_port if port is None else port
    sock = _listen(name, host, port)
    config = uvicorn.Config(
        create_app(receiver),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"{name}-api", daemon=True
    )
    thread.start()
    sidecar = Sidecar(host, sock.getsockname()[1], server, thread, receiver)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sidecar.stop()
            sock.close()
            raise RuntimeError(
                f"{name}: REST sidecar on {host}:{sidecar.port} did not start "
                "(see the log for the cause)"
            )
        time.sleep(0.01)
    receiver.stats.rest_url = sidecar.url
    log.info("%s: REST sidecar at %s (live view at %s/live)", name, sidecar.url, sidecar.url)
    return sidecar


def _listen(name: str, host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise OSError(
            exc.errno, f"{name}: REST sidecar cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
