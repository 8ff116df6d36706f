"""`replay` tells a capture by its content and sends it where its reading class looks."""

from __future__ import annotations

import os
import pickle
import zipfile

import pytest

from tango_receiver.codecs import cbor_v2
from tango_receiver.sim.formats import default_port, reader
from tango_receiver.sim.replay import load_capture


def test_each_capture_is_read_by_its_class_on_its_default_port(fixtures_dir):
    cases = {
        "captured/eiger-stream-v1-eiger1-1m.zip": ("Eiger", 9999, 9),
        "captured/dectris-stream-v2-series.zip": ("DectrisStream2", 31001, 10),
        "dectris-stream-v2-r500k-bslz4-16bit": ("DectrisStream2", 31001, 10),
    }
    for name, (cls, port, images) in cases.items():
        capture = load_capture(fixtures_dir / name, "/data/x.h5")
        assert (reader(capture.format).__name__, default_port(capture.format)) == (cls, port)
        assert capture.images == images


def test_a_message_set_without_start_gets_one_named_from_its_images(fixtures_dir):
    messages = load_capture(
        fixtures_dir / "dectris-stream-v2-r500k-bslz4-16bit", "/data/r.h5"
    ).messages
    start, first = (cbor_v2.decode(m[0]) for m in messages[:2])
    assert start["type"] == "start" and start["channels"] == list(first["data"])
    assert (start["image_size_y"], start["image_size_x"]) == (514, 1030)
    assert start["series_id"] == first["series_id"] and start["number_of_images"] == 10
    assert start["user_data"]["filename"] == "/data/r.h5"
    assert cbor_v2.decode(messages[-1][0])["type"] == "end"


class Boom:
    def __reduce__(self):
        return os.system, ("false",)


@pytest.mark.parametrize("content", [pickle.dumps([b"x", Boom()]), b"not a capture"])
def test_anything_else_is_refused_and_runs_no_code(tmp_path, content):
    path = tmp_path / "capture.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("capture", content)
    with pytest.raises(ValueError, match="capture"):
        load_capture(path)
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a capture"):
        load_capture(tmp_path / "plain.txt")
