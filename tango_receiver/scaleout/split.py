"""Split one detector stream between N receivers ("parts"): ``tango-receiver split``.

A detector's PUSH socket deals every message to one of its peers, so N receivers pulling from it
directly would share one header and one end between them: all but one part would never open a
file. The splitter is the detector's only peer and has one PUSH socket per part: a control
message (a series' header or end) goes to every part, each image to one part, round-robin,
passing over a part whose queue is full. Nothing is dropped: when every part is full the
splitter waits, and the detector's PUSH waits for it, as it would for one slow receiver.

Messages are told apart from their first bytes only (classify.py) and forwarded as the buffers
they arrived in: a frame is never decoded nor copied.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from ..config import load_receiver
from ..detector import detector_for
from ..messages import Parts
from ..receiver_config import ReceiverConfig
from .classify import Kind, SplitError, classifier_for

log = logging.getLogger(__name__)

POLL_MS = 100  # longest wait on a socket before the stop flag is looked at
BATCH = 64  # messages taken from the detector's socket between two looks at the stop flag
RCVHWM = 64  # messages buffered from the detector: beyond, the detector's PUSH waits
SNDHWM = 32  # messages buffered per part: beyond, its images go to another part
LINGER_MS = 2000  # on stop, how long messages queued for the parts may still go out
WARN_AFTER_S = 10.0  # a message waiting this long for a part is worth telling the operator


@dataclass
class SplitCounts:
    """What the splitter did; written by its thread only."""

    received: int = 0  # messages from the detector
    control: int = 0  # control messages, each sent to every part
    unknown: int = 0  # messages not recognised, sent to one part as an image
    to_part: list[int] = field(default_factory=list)  # messages sent to each part
    skipped: int = 0  # images that went past their round-robin part because it was full
    stalls: int = 0  # messages that waited: no part that could take them had room


class Splitter:
    """One PULL from the detector, one bound PUSH per part (``base_port + i``; 0: any port).

    ``sndhwm`` bounds the messages queued for one part: the smaller, the sooner a slow part is
    passed over (and the less memory a stopped one holds); the larger, the more a part's short
    hiccup is absorbed. ``run`` and ``close`` belong to one thread; ``stop`` to any.
    """

    def __init__(
        self,
        upstream: Sequence[str],
        detector_class: str,
        parts: int,
        host: str = "127.0.0.1",
        base_port: int = 0,
        sndhwm: int = SNDHWM,
    ) -> None:
        self.classify = classifier_for(detector_class)
        if not upstream:
            raise SplitError("no upstream endpoint to pull from")
        if parts < 1 or (base_port and base_port + parts - 1 > 65535):
            raise SplitError(
                f"{parts} parts from base port {base_port}: need at least one "
                f"part, and ports up to 65535"
            )
        self.detector_class = detector_class
        self.counts = SplitCounts(to_part=[0] * parts)
        self._stop = threading.Event()
        self._next = 0  # the part whose turn it is for the next image
        self._unknown_told = False
        self._ctx = zmq.Context()
        self.upstream = self._ctx.socket(zmq.PULL)
        self.upstream.setsockopt(zmq.RCVHWM, RCVHWM)
        self.upstream.setsockopt(zmq.LINGER, 0)
        self.parts: list[zmq.Socket] = []
        self.ports: list[int] = []
        try:
            for endpoint in upstream:
                self.upstream.connect(endpoint)
            for i in range(parts):
                sock = self._ctx.socket(zmq.PUSH)
                self.parts.append(sock)
                sock.setsockopt(zmq.SNDHWM, sndhwm)
                sock.setsockopt(zmq.LINGER, LINGER_MS)
                if base_port:
                    sock.bind(f"tcp://{host}:{base_port + i}")
                    self.ports.append(base_port + i)
                else:
                    self.ports.append(sock.bind_to_random_port(f"tcp://{host}"))
        except zmq.ZMQError as exc:
            self.close()
            raise SplitError(
                f"upstream {', '.join(upstream)}, parts on {host} from port {base_port}: {exc}"
            ) from None
        self.upstream_endpoints = list(upstream)
        self.endpoints = [f"tcp://{host}:{port}" for port in self.ports]
        self._writable = zmq.Poller()
        for sock in self.parts:
            self._writable.register(sock, zmq.POLLOUT)

    @classmethod
    def for_receiver(
        cls, config: ReceiverConfig, parts: int, host: str = "127.0.0.1", base_port: int = 0
    ) -> Splitter:
        """The splitter of a detectors.yaml entry: its upstream (default ports included) and
        its class. Refused classes are refused before the detector class sees the entry."""
        classifier_for(config.detector_class)
        return cls(detector_for(config).endpoints(), config.detector_class, parts, host, base_port)

    # --- relay ---------------------------------------------------------------------------
    def run(self, status_every_s: float = 10.0) -> SplitCounts:
        """Relay until ``stop()``, logging the counts every ``status_every_s``."""
        log.info(
            "split %s (%s) into %d parts: %s",
            ", ".join(self.upstream_endpoints),
            self.detector_class,
            len(self.parts),
            ", ".join(self.endpoints),
        )
        next_status = time.monotonic() + status_every_s
        while not self._stop.is_set():
            if self.upstream.poll(POLL_MS):
                self._relay_batch()
            now = time.monotonic()
            if now >= next_status:
                next_status = now + status_every_s
                log.info("split: %s", self.status())
        log.info("split stopped: %s", self.status())
        return self.counts

    def stop(self) -> None:
        """Safe from another thread and from a signal handler."""
        self._stop.set()

    def close(self) -> None:
        """Messages already queued for a part get LINGER_MS to go out; the detector's are lost
        with the socket, as they would be with a receiver's."""
        self.upstream.close(linger=0)
        for sock in self.parts:
            sock.close()
        self._ctx.term()

    def __enter__(self) -> Splitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def status(self) -> str:
        c = self.counts
        images = [n - c.control for n in c.to_part]
        return (
            f"received {c.received}, control {c.control} (to every part), images per part "
            f"{images}, skipped {c.skipped}, stalls {c.stalls}, unknown {c.unknown}"
        )

    def _relay_batch(self) -> None:
        for _ in range(BATCH):
            try:
                parts = self.upstream.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.counts.received += 1
            if not self._route(parts):
                return

    def _route(self, parts: Parts) -> bool:
        """False: stopped while waiting for a part (the message is lost with the splitter)."""
        kind = self.classify(parts)
        if kind is Kind.CONTROL:
            self.counts.control += 1
            log.debug("control message to %d parts", len(self.parts))
            return all(self._send([i], parts) is not None for i in range(len(self.parts)))
        if kind is Kind.UNKNOWN:
            self.counts.unknown += 1
            if not self._unknown_told:
                self._unknown_told = True
                log.warning(
                    "split: a %d-part message that is no %s message; sent to one part, "
                    "whose receiver will count it invalid (further ones are counted)",
                    len(parts),
                    self.detector_class,
                )
        n = len(self.parts)
        order = [(self._next + k) % n for k in range(n)]
        sent = self._send(order, parts)
        if sent is None:
            return False
        if sent != order[0]:
            self.counts.skipped += 1
        self._next = (sent + 1) % n
        return True

    def _send(self, order: Sequence[int], parts: Parts) -> int | None:
        """Send to the first part of ``order`` with room, waiting while none has (the detector
        then waits too: nothing is dropped). Returns the part; None: stopped while waiting."""
        sent = self._try(order, parts)
        if sent is not None:
            return sent
        self.counts.stalls += 1
        since, told = time.monotonic(), False
        while not self._stop.is_set():
            if len(order) == 1:
                self.parts[order[0]].poll(POLL_MS, zmq.POLLOUT)
            else:
                self._writable.poll(POLL_MS)
            sent = self._try(order, parts)
            if sent is not None:
                return sent
            if not told and time.monotonic() - since > WARN_AFTER_S:
                told = True
                log.warning(
                    "split: part(s) %s took nothing for %.0f s; the detector waits "
                    "(is their receiver running and connected?)",
                    ", ".join(map(str, order)),
                    WARN_AFTER_S,
                )
        return None

    def _try(self, order: Sequence[int], parts: Parts) -> int | None:
        for i in order:
            try:
                self.parts[i].send_multipart(parts, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                continue
            self.counts.to_part[i] += 1
            return i
        return None


# --- command line --------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``tango-receiver split CONFIG NAME --parts N --base-port P``."""
    p = sub.add_parser(
        "split",
        help="relay one detector stream to N receivers: control "
        "messages to every one, each image to one of them",
        description="The receivers (parts) each take an entry of their own "
        "with upstream tcp://HOST:P+i and file_suffix _part<i>; "
        "`tango-receiver stitch` joins their files afterwards.",
    )
    p.add_argument("config", type=Path, help="detectors.yaml")
    p.add_argument("name", help="the detector's entry: its upstream and class")
    p.add_argument("--parts", type=int, required=True, help="receivers to split between")
    p.add_argument("--base-port", type=int, required=True, help="part i is served on P + i")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the parts' ports bind to (0.0.0.0: receivers on other hosts)",
    )
    p.add_argument("--status-every", type=float, default=10.0, help="seconds between status lines")
    p.set_defaults(fn=cmd_split)
    return p


def cmd_split(args: argparse.Namespace) -> int:
    """Runs until SIGTERM or SIGINT; exit status 2 when the entry cannot be split."""
    config = load_receiver(args.config, args.name)
    try:
        splitter = Splitter.for_receiver(config, args.parts, args.host, args.base_port)
    except ValueError as exc:  # SplitError, or the detector class refusing the entry
        log.error("split %s: %s", args.name, exc)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: splitter.stop())
    try:
        splitter.run(args.status_every)
    finally:
        splitter.close()
    return 0
