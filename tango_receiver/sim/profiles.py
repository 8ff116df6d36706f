"""Detector profiles: a wire format with a real detector's frame shape, pixel type and rate.

``tango-receiver simulate <profile>`` streams that detector's frames (the profile's shape and
type are the defaults of ``--shape`` and ``--dtype``); detectors.yaml's entry for the same
detector states the same shape and type, and a test keeps the two equal. A wire format given by
its own name plays its first profile here (``sim.formats.default_form``), so ``simulate
stream2`` sends what the ``eiger2-sim`` entry expects. ``rate`` is the detector's full-frame
rate, for choosing ``--rate``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    format: str  # a simulator name (Detector.simulator)
    shape: tuple[int, ...]
    dtype: str
    rate: float  # frames/s
    title: str


PROFILES: dict[str, Profile] = {
    "eiger-sim": Profile(
        "eiger", (1065, 1030), "uint32", 3000.0, "DECTRIS EIGER 1M, stream v1 (SIMPLON 1.8)"
    ),
    "eiger2-sim": Profile(
        "stream2", (514, 1030), "uint16", 2000.0, "DECTRIS EIGER2 500K, stream v2 (CBOR)"
    ),
    "pi-mte3": Profile(
        "internal",
        (2048, 2048),
        "uint16",
        1.0,
        "Teledyne Princeton Instruments PI-MTE3 2048B (PICam), 16-bit CCD",
    ),
    "dhyana": Profile(
        "internal", (2048, 2048), "uint16", 24.0, "Tucsen Dhyana 95 V2, back-illuminated sCMOS"
    ),
    "ximea": Profile(
        "internal", (3008, 4112), "uint16", 30.0, "XIMEA xiC MC124MG, 12-bit sCMOS in 16-bit pixels"
    ),
    "fastcam-nova": Profile(
        "internal",
        (256, 256),
        "uint16",
        20000.0,
        "Photron FASTCAM Nova S16, high frame rate at reduced resolution",
    ),
    "rigaku": Profile(
        "internal", (385, 775), "uint32", 100.0, "Rigaku HyPix-6000HE, photon counting"
    ),
    "zyla": Profile("internal", (2160, 2560), "uint16", 100.0, "Andor Zyla 5.5 sCMOS"),
    "pilatus-2m": Profile(
        "pilatus", (1679, 1475), "int32", 250.0, "DECTRIS PILATUS3 2M, CBF files"
    ),
    "pilatus-6m": Profile(
        "pilatus", (2527, 2463), "int32", 100.0, "DECTRIS PILATUS3 6M, CBF files"
    ),
    "orca-lightning": Profile(
        "orca", (2592, 4608), "uint16", 121.0, "Hamamatsu ORCA-Lightning, 12-bit Mono12p"
    ),
    "lambda-4x750k": Profile(
        "lambda", (4, 516, 1556), "uint16", 2000.0, "X-Spectrum LAMBDA, four 750K modules, 12-bit"
    ),
    "xspress3-4ch": Profile(
        "xspress3",
        (4, 4096),
        "uint32",
        1000.0,
        "Quantum Detectors Xspress3, 4 channels x 4096 bins",
    ),
}
