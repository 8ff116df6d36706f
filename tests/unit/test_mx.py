"""What each wire form's header says for NXmx (mx.py), and the Pilatus mini-header read from a
CBF file (codecs/cbf.py)."""

from __future__ import annotations

import numpy as np

from tango_receiver.codecs.cbf import decode_cbf, encode_cbf, mini_header_text, parse_mini_header
from tango_receiver.mx import PILATUS_CBF, STREAM_V2, read_facts
from tango_receiver.sim.pilatus import MINI_HEADER


def test_mini_header_is_read_and_an_odd_line_left_out():
    image = np.arange(12, dtype=np.int32).reshape(3, 4)
    text = MINI_HEADER.format(
        timestamp="2026-12-05T10:11:12.345", beam_x=1.5, beam_y=2.25, angle=7.0
    )
    blob = encode_cbf(image, text.replace("# Wavelength 0.97625 A", "# Wavelength nil A"))
    header = parse_mini_header(mini_header_text(blob))
    assert header["Pixel_size"] == [172e-6, 172e-6] and header["Beam_xy"] == [1.5, 2.25]
    assert header["sensor"] == ["Silicon", 0.001] and header["Start_angle"] == 7.0
    assert header["timestamp"] == "2026-12-05T10:11:12.345" and header["serial"] == "24-0118"
    assert "Wavelength" not in header and header["Detector_distance"] == 0.3
    np.testing.assert_array_equal(decode_cbf(blob), image)  # the pixels are as before


def test_a_cbf_without_mini_header_says_nothing():
    assert mini_header_text(encode_cbf(np.zeros((2, 2), np.int32))) == ""


def test_facts_follow_keys_indexes_and_the_first_channel():
    facts = read_facts({"cbf": {"Beam_xy": [10.0, 20.0], "Pixel_size": [1e-4]}}, PILATUS_CBF)
    assert facts == {"beam_center_x": 10.0, "beam_center_y": 20.0, "x_pixel_size": 1e-4}
    start = {
        "threshold_energy": {"threshold_1": 4000.0, "threshold_2": 9000.0},
        "user_data": "not a map",
        "pixel_size_x": None,
    }
    assert read_facts(start, STREAM_V2) == {"threshold_energy": 4000.0}
