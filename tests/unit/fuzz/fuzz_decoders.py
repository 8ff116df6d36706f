"""Coverage-guided fuzzing of every detector decoder (atheris).

    python tests/unit/fuzz/fuzz_decoders.py -runs=200000          # all decoders, one input each run
    python tests/unit/fuzz/fuzz_decoders.py -max_total_time=600

An input is split into a decoder choice and up to 6 parts; anything but a message or
InvalidMessage is a finding. tests/unit/test_fuzz_decoders.py runs a short, bounded session in CI.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from tango_receiver.config import parse_entry
    from tango_receiver.detector import detector_classes, detector_for
    from tango_receiver.messages import InvalidMessage

DETECTORS = [
    detector_for(
        parse_entry(
            f"fuzz-{name}",
            {
                "class": name,
                "upstream": "tcp://127.0.0.1:1",
                "write_roots": ["/tmp"],
                "verify_chunks": True,
            },
        )
    )
    for name in sorted(detector_classes())
]


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    detector = DETECTORS[fdp.ConsumeIntInRange(0, len(DETECTORS) - 1)]
    parts = [
        fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4096)) for _ in range(fdp.ConsumeIntInRange(1, 6))
    ]
    try:
        detector.decode(parts)
    except InvalidMessage:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
