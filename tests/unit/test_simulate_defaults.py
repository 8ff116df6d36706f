"""`simulate` defaults to the frame of the detectors.yaml entry that reads its format."""

from __future__ import annotations

from pathlib import Path

from tango_receiver.config import load_config
from tango_receiver.detector import simulators
from tango_receiver.sim.formats import FALLBACK_FORM, default_form
from tango_receiver.sim.profiles import PROFILES

REPO = Path(__file__).resolve().parents[2]


def test_a_profile_sends_its_own_frame():
    for name, profile in PROFILES.items():
        assert default_form(name) == (profile.shape, profile.dtype), name


def test_a_wire_format_sends_the_frame_of_an_entry_of_its_class():
    entries = load_config(REPO / "detectors.yaml").values()
    for fmt, cls in simulators().items():
        forms = {
            (tuple(e.shape), e.dtype)
            for e in entries
            if e.detector_class == cls.__name__ and e.shape
        }
        assert default_form(fmt) in (forms or {FALLBACK_FORM}), fmt


def test_stream2_and_eiger_default_to_their_sim_entries():
    entries = load_config(REPO / "detectors.yaml")
    for fmt, name in (("stream2", "eiger2-sim"), ("eiger", "eiger-sim")):
        assert default_form(fmt) == (tuple(entries[name].shape), entries[name].dtype)
