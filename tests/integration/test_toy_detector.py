"""Adding a detector is one class: a toy wire form, defined in a module of its own written here,
is received, split, simulated and stored with no other file of the project edited."""

from __future__ import annotations

import gc
import importlib
import sys
import textwrap

import h5py
import numpy as np
import pytest

from conftest import make_config, run_series
from tango_receiver.detector import detector_classes, simulators
from tango_receiver.scaleout.classify import Kind, classifier_for
from tango_receiver.sim.formats import default_port, formats, series_for

TOY = '''
"""A toy wire form: JSON heads "toy-start" / "toy-frame" / "toy-stop", raw little-endian
uint16 pixels, frames numbered from 1."""

import json

import numpy as np

from tango_receiver.decoding import json_part, non_negative_int
from tango_receiver.detector import Detector, Simulator, WireTypes
from tango_receiver.messages import Header, Image, InvalidMessage, SeriesEnd


def toy_series(frames, filename, count, series):
    yield [json.dumps({"kind": "toy-start", "file": filename, "frames": count}).encode()]
    for i in range(count):
        pixels = frames[i % len(frames)].astype("<u2")
        yield [json.dumps({"kind": "toy-frame", "n": i + 1, "rows": pixels.shape[0],
                           "cols": pixels.shape[1]}).encode(), pixels.tobytes()]
    yield [json.dumps({"kind": "toy-stop"}).encode()]


class Toy(Detector):
    default_port = 19321
    types = WireTypes(header="toy-start", image="toy-frame", end="toy-stop")
    simulator = Simulator("toy", toy_series)

    @staticmethod
    def message_type(parts):
        try:
            return json.loads(bytes(parts[0])).get("kind")
        except ValueError:
            return None

    def decode(self, parts):
        head = json_part(parts, 0, "toy head")
        kind = head.get("kind")
        if kind == self.types.header:
            return Header(msg_number=0, filename=str(head.get("file", "")),
                          nimages=head.get("frames"))
        if kind == self.types.image:
            number = non_negative_int(head, "n")
            shape = (non_negative_int(head, "rows"), non_negative_int(head, "cols"))
            pixels = np.frombuffer(parts[1], dtype="<u2").reshape(shape)
            return Image(msg_number=number, frame=number - 1,
                         channels=[self.pixels_channel("data", pixels)])
        if kind == self.types.end:
            return SeriesEnd(msg_number=None)
        raise InvalidMessage(f"unknown kind {kind!r}")
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_detector.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_detector")
    yield module
    del sys.modules["toy_detector"], module
    gc.collect()  # the class leaves the registry with its module


def test_a_toy_detector_class_runs_a_series_with_no_other_file_edited(tmp_path, sender, toy_module):
    assert detector_classes()["Toy"] is toy_module.Toy
    assert simulators()["toy"] is toy_module.Toy and "toy" in formats()
    assert default_port("toy") == 19321
    messages = list(series_for("toy", (12, 20), "uint16", 5, str(tmp_path / "toy.h5")))
    classify = classifier_for("Toy")
    assert [classify(m) for m in messages] == [Kind.CONTROL] + [Kind.IMAGE] * 5 + [Kind.CONTROL]

    config = make_config(sender.port, tmp_path, "Toy")  # checked at load, like any class
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert (snap.frames_received, snap.frames_written, snap.frames_invalid) == (5, 5, 0)
    with h5py.File(tmp_path / "toy.h5", "r") as f:
        stored = f["/entry/instrument/detector/data"][()]
        assert f["/entry/instrument/detector/sequence_number"][()].tolist() == [0, 1, 2, 3, 4]
    sent = [np.frombuffer(m[1], "<u2").reshape(12, 20) for m in messages[1:-1]]
    assert np.array_equal(stored, np.stack(sent))
