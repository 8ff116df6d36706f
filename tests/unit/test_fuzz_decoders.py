"""Any bytes at every decoder: a message or InvalidMessage, never another exception.

Property-based (hypothesis) over every detector class the package ships (``detector_classes()``
also holds those other tests define):
random parts, and valid messages from each simulator with bytes flipped, cut or appended.
The atheris harness in tests/unit/fuzz/ runs the same target for longer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_config
from tango_receiver.detector import detector_classes, detector_for
from tango_receiver.messages import InvalidMessage
from tango_receiver.sim.formats import series_for

SEEDS = {  # a valid series per wire format, to mutate
    "Detector": "internal",
    "Eiger": "eiger",
    "DectrisStream2": "stream2",
    "Pilatus": "pilatus",
    "OrcaLightning": "orca",
    "Xspress3": "xspress3",
}


def valid_messages(cls_name: str) -> list[list[bytes]]:
    fmt = SEEDS.get(cls_name, "internal")
    return [[bytes(p) for p in m] for m in series_for(fmt, (16, 12), "uint16", count=2)]


def decode_or_invalid(detector, parts) -> None:
    try:
        detector.decode(parts)
    except InvalidMessage:
        pass


SHIPPED = sorted(
    name for name, cls in detector_classes().items() if cls.__module__ == "tango_receiver.detector"
)


@pytest.fixture(scope="module", params=SHIPPED)
def detector(request, tmp_path_factory):
    return detector_for(
        make_config(9999, tmp_path_factory.mktemp("fuzz"), request.param, verify_chunks=True)
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_random_parts(detector, parts):
    decode_or_invalid(detector, parts)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_valid_messages(detector, data):
    messages = valid_messages(type(detector).__name__)
    parts = [bytearray(p) for p in data.draw(st.sampled_from(messages))]
    index = data.draw(st.integers(0, len(parts) - 1))
    part = parts[index]
    action = data.draw(st.sampled_from(["flip", "cut", "append", "drop"]))
    if action == "flip" and part:
        at = data.draw(st.integers(0, len(part) - 1))
        part[at] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del part[data.draw(st.integers(0, len(part))) :]
    elif action == "append":
        part += data.draw(st.binary(min_size=1, max_size=64))
    elif len(parts) > 1:
        del parts[index]
    decode_or_invalid(detector, [bytes(p) for p in parts])


def test_atheris_session_finds_nothing():
    """A bounded coverage-guided run of tests/unit/fuzz/fuzz_decoders.py (longer: see there)."""
    pytest.importorskip("atheris", reason="atheris has no wheel for this platform")
    import subprocess
    import sys
    from pathlib import Path

    harness = Path(__file__).parent / "fuzz" / "fuzz_decoders.py"
    result = subprocess.run(
        [sys.executable, str(harness), "-runs=30000", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 30000 runs" in result.stderr
