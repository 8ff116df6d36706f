"""The benchmark scenarios: what a detector sends, how many frames, how the receiver is set up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..codecs.bslz4 import encode_chunk
from ..sim.eiger_v1 import eiger_v1_series
from ..sim.frames import synthetic_frames
from ..sim.internal import internal_series
from ..sim.pilatus import pilatus_series
from ..sim.stream_v2 import stream_v2_series

DISTINCT = 4  # distinct frames cycled by the sender; generating each frame would dominate


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    detector_class: str
    wire: str  # "eiger" | "stream2" | "internal" | "pilatus"
    shape: tuple[int, int]
    dtype: str
    frames: int
    quick_frames: int
    photons: float  # mean counts per pixel: sets how well frames compress
    compression: str = "bslz4"  # what the detector sends
    nworkers: int = 1
    consumer_fraction: float = 0.0  # a secondary consumer reading at this fraction of the rate
    probe_liveview: bool = False  # a live-view client asks for the newest frame 10 times a second
    parts: int = 1  # scale-out: receiver processes behind `tango-receiver split`
    time_decoders: bool = False  # the decoders alone too (where decoding is the work: 3, 4)
    store_loop: bool = False  # the bare PULL + write_direct_chunk loop too (chunks as they come)
    config: dict[str, Any] = field(default_factory=dict)

    def count(self, quick: bool) -> int:
        return self.quick_frames if quick else self.frames

    def frames_data(self) -> list[np.ndarray]:
        return synthetic_frames(DISTINCT, self.shape, self.dtype, rate=self.photons, seed=7)

    def chunks(self) -> list[bytes]:
        """What the writer stores per frame (for the bare h5py baseline)."""
        return [encode_chunk(f) for f in self.frames_data()]

    def messages(self, filename: str, quick: bool) -> Iterator[list]:
        frames, count = self.frames_data(), self.count(quick)
        if self.wire == "eiger":
            return eiger_v1_series(frames, filename, count=count)
        if self.wire == "stream2":
            return stream_v2_series({"threshold_1": frames}, filename, count=count)
        if self.wire == "pilatus":
            return pilatus_series(frames, filename, count=count)
        return internal_series(frames, filename, compression=self.compression, count=count)


EIGER_4M = Scenario(
    "8-4m-bslz4",
    "EIGER 4M bslz4 (internal format), 2 workers, no ROIs",
    "Detector",
    "internal",
    (2162, 2068),
    "uint32",
    frames=2000,
    quick_frames=200,
    photons=0.05,
    nworkers=2,
)
#: four ROIs of a diffraction experiment's kinds: a peak, a band across the frame, a corner, the
#: beam stop; counted from the chunks' blocks under them (Internals.md, "ROI counting")
ROIS_4M = {
    "peak": [1000, 1100, 1000, 1100],
    "band": [500, 700, 0, 2068],
    "corner": [0, 256, 0, 256],
    "beamstop": [1030, 1130, 980, 1080],
}

EIGER_1M = Scenario(
    "1-eiger-v1",
    "EIGER 1M stream v1, bslz4, sparse",
    "Eiger",
    "eiger",
    (1065, 1030),
    "uint32",
    frames=40000,
    quick_frames=10000,
    photons=0.002,
)
EIGER2_16M = Scenario(
    "2-eiger2-16m",
    "EIGER2 16M stream v2, bslz4",
    "DectrisStream2",
    "stream2",
    (4362, 4148),
    "uint32",
    frames=1500,
    quick_frames=200,
    photons=0.05,
    probe_liveview=True,
)
GENERAL_38K = Scenario(
    "6-general-38k",
    "general case (internal format), bslz4 by the detector, 38 kB chunks",
    "Detector",
    "internal",
    (1065, 1030),
    "uint32",
    frames=40000,
    quick_frames=10000,
    photons=0.002,
    store_loop=True,
)
GENERAL_137K = replace(
    GENERAL_38K,
    name="6-general-137k",
    title="general case (internal format), bslz4 by the detector, 137 kB chunks",
    frames=20000,
    quick_frames=5000,
    photons=0.05,
)

ZYLA_1W = Scenario(
    "3-zyla-1w",
    "Zyla raw uint16, compressed on the way, 1 worker",
    "Detector",
    "internal",
    (2160, 2560),
    "uint16",
    frames=400,
    quick_frames=80,
    photons=100.0,
    compression="none",
    nworkers=1,
    time_decoders=True,
    config={"compress": True},
)
PILATUS_1W = Scenario(
    "4-pilatus-1w",
    "Pilatus 2M CBF -> bitshuffle-LZ4, 1 worker",
    "Pilatus",
    "pilatus",
    (1679, 1475),
    "int32",
    frames=1000,
    quick_frames=200,
    photons=1.0,
    nworkers=1,
    time_decoders=True,
)
SCENARIOS: list[Scenario] = [
    EIGER_1M,
    replace(
        EIGER_1M,
        name="1-eiger-v1-python",
        title="scenario 1 without the compiled lane: every frame through Python",
        config={"fast_lane": False},
    ),
    replace(
        EIGER_1M,
        name="7-eiger-v1-2w",
        nworkers=2,
        title="scenario 1 with 2 workers: each lane's runs step by 2, put together again",
    ),
    EIGER2_16M,
    replace(
        EIGER2_16M,
        name="2-eiger2-16m-2proc",
        title="scenario 2 through the splitter into 2 receiver processes",
        probe_liveview=False,
        parts=2,
    ),
    ZYLA_1W,
    replace(
        ZYLA_1W,
        name="3-zyla-2w",
        title="Zyla raw uint16, compressed on the way, 2 workers",
        nworkers=2,
    ),
    PILATUS_1W,
    replace(
        PILATUS_1W,
        name="4-pilatus-2w",
        title="Pilatus 2M CBF -> bitshuffle-LZ4, 2 workers",
        nworkers=2,
    ),
    replace(
        EIGER_1M,
        name="5-eiger-slow-consumer",
        title="scenario 1 + secondary consumer at 1/10 rate",
        consumer_fraction=0.1,
    ),
    EIGER_4M,
    replace(
        EIGER_4M,
        name="8-4m-bslz4-rois",
        title="scenario 8 with 4 ROIs counted",
        config={"rois": ROIS_4M},
    ),
    GENERAL_38K,
    replace(
        GENERAL_38K,
        name="6-general-38k-python",
        config={"fast_lane": False},
        store_loop=False,
        title="scenario 6 at 38 kB without the compiled lane: every frame through Python",
    ),
    GENERAL_137K,
    replace(
        GENERAL_137K,
        name="6-general-137k-python",
        config={"fast_lane": False},
        store_loop=False,
        title="scenario 6 at 137 kB without the compiled lane: every frame through Python",
    ),
]
