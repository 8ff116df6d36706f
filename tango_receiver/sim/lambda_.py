"""An X-Spectrum Lambda: one internal-format stream per module, each on its own socket.

Each module's header carries where the module sits in the assembled image (``x``, ``y``,
``rotation``, ``full_shape``); each module's images carry its own plane of the frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import zip_longest
from typing import Any

import numpy as np

from ..codecs.bslz4 import encode_chunk
from .internal import encoded_series
from .sender import Sender

GAP = 6  # pixels between modules in the assembled image

FIRST_PORT = 9010  # module m streams on FIRST_PORT + m, the Lambda's default ports


def stacked_geometry(modules: int, rows: int, cols: int) -> list[dict[str, Any]]:
    """Modules one above the other, ``GAP`` pixels apart."""
    full_shape = [modules * rows + (modules - 1) * GAP, cols]
    return [
        {"x": 0, "y": m * (rows + GAP), "rotation": 0, "full_shape": full_shape}
        for m in range(modules)
    ]


def lambda_series(
    frames: Sequence[np.ndarray],
    filename: str = "",
    metadata: dict[str, Any] | None = None,
    count: int | None = None,
    compression: str = "none",
    geometry: list[dict[str, Any]] | None = None,
) -> list[Iterator[list[bytes]]]:
    """One series per module; ``frames`` are ``(module, y, x)`` arrays, module m sends plane m."""
    if frames[0].ndim != 3:
        raise ValueError(
            f"Lambda frames are (module, y, x), e.g. 4 x 516 x 1556; got shape {frames[0].shape}"
        )
    modules, rows, cols = frames[0].shape
    geometry = geometry or stacked_geometry(modules, rows, cols)
    encode = encode_chunk if compression == "bslz4" else np.ndarray.tobytes
    return [
        encoded_series(
            [
                (
                    {"shape": [rows, cols], "type": f.dtype.name, "compression": compression},
                    [encode(f[m])],
                )
                for f in frames
            ],
            filename,
            (metadata or {}) | geometry[m],
            count,
        )
        for m in range(modules)
    ]


class ModuleSenders:
    """One PUSH socket per module, sending the modules' messages in step."""

    def __init__(
        self, ports: Sequence[int], host: str = "127.0.0.1", timeout_s: float = 30.0
    ) -> None:
        self.senders = [Sender(port=p, host=host, timeout_s=timeout_s) for p in ports]

    @property
    def endpoints(self) -> list[str]:
        return [s.endpoint for s in self.senders]

    def send(self, streams: Sequence[Iterable[list[bytes]]]) -> None:
        """Message i of every module that has one, then message i + 1, ..."""
        for messages in zip_longest(*streams):
            self.send_set(messages)

    def send_set(self, messages: Sequence[list[bytes] | None]) -> None:
        for sender, parts in zip(self.senders, messages, strict=False):
            if parts is not None:
                sender.send([parts])

    def close(self) -> None:
        for sender in self.senders:
            sender.close()

    def __enter__(self) -> ModuleSenders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def first_module_series(
    frames: Sequence[np.ndarray], filename: str = "", count: int | None = None
) -> Iterator[list[bytes]]:
    """For ``tango-receiver simulate lambda``, which has one socket: module 0's messages go out
    through it (port 9010 by default); modules 1, 2, ... are sent from here, in step, on
    127.0.0.1:9011, 9012, ... (the Lambda's default ports)."""
    first, *others = lambda_series(frames, filename, count=count)
    ports = [FIRST_PORT + m for m in range(1, len(others) + 1)]
    with ModuleSenders(ports) as senders:
        for messages in zip(first, *others, strict=False):
            senders.send_set(messages[1:])
            yield messages[0]


def simulate(
    frames: Sequence[np.ndarray], filename: str, count: int, series: int
) -> Iterator[list[bytes]]:
    """``tango-receiver simulate``'s series of this wire form (see detector.Simulator)."""
    return first_module_series(frames, filename, count=count)
