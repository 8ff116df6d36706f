"""NXmx files from the real stream v1 and v2 captures and the Pilatus simulator, over real
sockets: ``nxvalidate -a NXmx`` finds no error, and every geometry field is what the stream
said; general-case detectors stay plain NeXus."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import fabio
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import make_config, run_series
from tango_receiver.codecs import cbor_v2
from tango_receiver.codecs.bslz4 import decode_chunk
from tango_receiver.engine.nxmx import UNKNOWN, Nxmx
from tango_receiver.mx import STREAM_V1
from tango_receiver.receiver_config import NexusConfig
from tango_receiver.sim.eiger_v1 import capture_v1, eiger_v1_series
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.internal import internal_series
from tango_receiver.sim.pilatus import pilatus_series
from tango_receiver.sim.stream_v2 import capture_v2

NXVALIDATE = Path(sys.executable).with_name("nxvalidate")
EIGER = "/entry/instrument/eiger"


def nxmx_errors(path: Path) -> int:
    """What ``nxvalidate -a NXmx`` counts as errors in the file (its own command line)."""
    done = subprocess.run(
        [str(NXVALIDATE), "-a", "NXmx", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    found = re.search(r"Total number of errors: (\d+)", text)
    assert found, text
    return int(found.group(1))


def text(ds: h5py.Dataset) -> str:
    return ds.asstr()[()]


def position(ds: h5py.Dataset) -> np.ndarray:
    """Where a translation puts its origin: value x vector + offset, in metres."""
    return ds[()] * ds.attrs["vector"] + ds.attrs["offset"]


@pytest.mark.parametrize("geometry", ["as-captured", "beam-centre-set"])
def test_stream_v1_capture_is_nxmx_with_its_geometry(tmp_path, sender, fixtures_dir, geometry):
    target = tmp_path / "v1.h5"
    messages = capture_v1(fixtures_dir / "captured" / "eiger-stream-v1-eiger1-1m.zip", str(target))
    config = json.loads(messages[0][1])
    lane = geometry == "as-captured"  # the compiled lane (if built) does not read dconfig
    if not lane:  # the capture has 0, 0 and 0 m: make the metres show
        config |= {"beam_center_x": 512.25, "beam_center_y": 530.5, "detector_distance": 0.125}
        messages[0][1] = json.dumps(config).encode()
    receiver, snap = run_series(
        make_config(sender.port, tmp_path, "Eiger", fast_lane=lane, dset_name=f"{EIGER}/data"),
        sender,
        messages,
    )
    receiver.close()
    assert snap.frames_written == 9
    assert nxmx_errors(target) == 0
    with h5py.File(target, "r") as f:
        det = f[EIGER]
        for field, key, units in (
            ("beam_center_x", "beam_center_x", "pixel"),
            ("beam_center_y", "beam_center_y", "pixel"),
            ("distance", "detector_distance", "m"),
            ("x_pixel_size", "x_pixel_size", "m"),
            ("y_pixel_size", "y_pixel_size", "m"),
            ("count_time", "count_time", "s"),
            ("sensor_thickness", "sensor_thickness", "m"),
            ("threshold_energy", "threshold_energy", "eV"),
        ):
            assert det[field][()] == config[key], field
            assert det[field].attrs["units"] == units, field
        beam = f["/entry/instrument/beam/incident_wavelength"]
        assert beam[()] == config["wavelength"] and beam.attrs["units"] == "angstrom"
        assert text(det["sensor_material"]) == "Si"
        assert text(f["/entry/definition"]) == "NXmx"
        assert text(f["/entry/start_time"]) == config["data_collection_date"]
        # the chain: pixel directions -> module offset -> translation along the beam -> "."
        translation = det["transformations/translation"]
        assert text(det["depends_on"]) == translation.name
        assert translation.attrs["depends_on"] == "."
        np.testing.assert_allclose(position(translation), [0, 0, config["detector_distance"]])
        module = det["module"]
        assert module.attrs["NX_class"] == "NXdetector_module"
        assert list(module["data_size"][()]) == [1065, 1030]
        offset = module["module_offset"]
        assert offset.attrs["depends_on"] == translation.name
        np.testing.assert_allclose(
            position(offset),
            [config["beam_center_x"] * 7.5e-5, config["beam_center_y"] * 7.5e-5, 0],
        )
        for name, size, vector in (
            ("fast_pixel_direction", "x_pixel_size", [-1, 0, 0]),
            ("slow_pixel_direction", "y_pixel_size", [0, -1, 0]),
        ):
            assert module[name][()] == config[size] and module[name].attrs["units"] == "m"
            assert list(module[name].attrs["vector"]) == vector
            assert module[name].attrs["depends_on"] == offset.name
        # the beam-centre pixel lies on the beam, distance downstream
        origin = position(translation) + position(offset)
        spot = (
            origin
            - config["beam_center_x"] * 7.5e-5 * np.array([1, 0, 0])
            - config["beam_center_y"] * 7.5e-5 * np.array([0, 1, 0])
        )
        np.testing.assert_allclose(spot, [0, 0, config["detector_distance"]], atol=1e-12)
        # the calibration arrays are the header's own copy, stored once
        assert det["pixel_mask"] == det["metadata/pixel_mask"]
        assert det["flatfield"] == det["metadata/flatfield"]
        assert f["/entry/data/data"].shape == (9, 1065, 1030)
        # each frame's dconfig times, in seconds; NaN only for frames the lane took
        sent = np.array(
            [
                [json.loads(m[3])[k] / 1e9 for k in ("start_time", "stop_time", "real_time")]
                for m in messages[1:-1]
            ]
        )
        stored = np.stack([det[k][()] for k in ("start_time", "stop_time", "real_time")], 1)
        assert det["real_time"].attrs["units"] == "s" and stored.shape == (9, 3)
        kept = ~np.isnan(stored[:, 0])
        assert kept[0] and (lane or kept.all())
        np.testing.assert_array_equal(stored[kept], sent[kept])


def test_stream_v2_capture_is_nxmx(tmp_path, sender, fixtures_dir):
    """Names the beamline put in ``user_data`` are used; the entry's nexus block wins."""
    target = tmp_path / "v2.h5"
    messages = capture_v2(fixtures_dir / "captured" / "dectris-stream-v2-series.zip", str(target))
    nexus = {
        "sample_name": "lysozyme from the entry",
        "goniometer": [{"name": "omega", "vector": [-1, 0, 0], "start": 5, "increment": 0.5}],
    }
    config = make_config(sender.port, tmp_path, "DectrisStream2", nexus=nexus)
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert snap.frames_written == 10
    assert nxmx_errors(target) == 0
    with h5py.File(target, "r") as f:
        det = f["/entry/instrument/detector"]
        assert f["/entry/instrument/beam/incident_wavelength"][()] == 1.5498024804150032
        assert f["/entry/instrument/beam/incident_energy"][()] == 8000.0
        assert text(f["/entry/instrument/name"]) == "X06SA"
        assert f["/entry/instrument/name"].attrs["short_name"] == "PXIII"
        assert text(f["/entry/source/name"]) == "Swiss Light Source"
        assert f["/entry/source/name"].attrs["short_name"] == "SLS"
        assert text(f["/entry/sample/name"]) == "lysozyme from the entry"
        omega = f["/entry/sample/transformations/omega"]
        np.testing.assert_allclose(omega[()], 5 + 0.5 * np.arange(10))
        assert omega.attrs["units"] == "deg" and list(omega.attrs["vector"]) == [-1, 0, 0]
        assert text(f["/entry/sample/depends_on"]) == omega.name
        assert det["pixel_mask"] == det["metadata/pixel_mask/threshold_1"]
        assert det["x_pixel_size"][()] == 7.5e-5 and det["count_time"].attrs["units"] == "s"
        assert text(f["/entry/start_time"]) == "2024-03-07T14:43:31.193000+01:00"
        images = [cbor_v2.decode(memoryview(m[0])) for m in messages[1:-1]]
        for key in ("start_time", "stop_time", "real_time"):
            assert det[key].attrs["units"] == "s"
            assert list(det[key][()]) == [i[key][0] / i[key][1] for i in images]


def test_pilatus_mini_header_makes_nxmx_and_missing_names_are_logged_once(tmp_path, sender, caplog):
    frames = synthetic_frames(3, (195, 487), "int32", rate=1.0)
    targets = [tmp_path / "pilatus_1.h5", tmp_path / "pilatus_2.h5"]
    messages = [m for t in targets for m in pilatus_series(frames, str(t))]
    config = make_config(sender.port, tmp_path, "Pilatus")
    with caplog.at_level(logging.WARNING, logger="tango_receiver.engine.nxmx"):
        receiver, snap = run_series(config, sender, messages, series_count=2)
        receiver.close()
    assert snap.frames_written == 3
    told = [r.getMessage() for r in caplog.records if "give no" in r.getMessage()]
    assert len(told) == 1 and "instrument_name, source_name, sample_name, goniometer" in told[0]
    for target in targets:
        assert nxmx_errors(target) == 0
    with h5py.File(targets[0], "r") as f:
        det = f["/entry/instrument/detector"]
        assert det["metadata/cbf/Wavelength"][()] == 0.97625  # the mini-header, kept
        assert f["/entry/instrument/beam/incident_wavelength"][()] == 0.97625
        assert (det["beam_center_x"][()], det["beam_center_y"][()]) == (243.5, 97.5)
        assert det["distance"][()] == 0.3 and det["count_time"][()] == 0.099
        assert det["x_pixel_size"][()] == 172e-6 and text(det["sensor_material"]) == "Si"
        assert det["sensor_thickness"][()] == 0.001 and text(det["serial_number"]) == "24-0118"
        assert list(det["module/data_size"][()]) == [195, 487]
        assert text(f["/entry/instrument/name"]) == UNKNOWN
        assert text(f["/entry/sample/depends_on"]) == "."


def pixel_position(module: h5py.Group, column: float, row: float) -> np.ndarray:
    """Where the chain puts a stored pixel, in the detector's frame (before the distance)."""
    fast, slow = module["fast_pixel_direction"], module["slow_pixel_direction"]
    return (
        position(module["module_offset"])
        + column * fast[()] * fast.attrs["vector"]
        + row * slow[()] * slow.attrs["vector"]
    )


def test_pilatus_rotated_frames_get_the_rotated_geometry(tmp_path, sender):
    """``rotate`` stores the frames turned clockwise: each stored pixel is placed where the
    mini-header's geometry places the detector pixel it came from."""
    frames = synthetic_frames(2, (20, 30), "int32", rate=1.0)
    target = tmp_path / "rotated.h5"
    config = make_config(sender.port, tmp_path, "Pilatus", rotate=True)
    receiver, snap = run_series(config, sender, pilatus_series(frames, str(target)))
    receiver.close()
    assert snap.frames_written == 2
    assert nxmx_errors(target) == 0
    size, (beam_x, beam_y) = 172e-6, (15.0, 10.0)  # the simulator: the frame's middle
    with h5py.File(target, "r") as f:
        det = f["/entry/instrument/detector"]
        assert f["/entry/data/data"].shape == (2, 30, 20)
        assert (det["beam_center_x"][()], det["beam_center_y"][()]) == (19 - beam_y, beam_x)
        np.testing.assert_allclose(
            pixel_position(det["module"], 19 - beam_y, beam_x), 0, atol=1e-12
        )
        for column, row in ((0, 0), (29, 0), (7, 13), (29, 19)):  # as the detector reads out
            read_out = size * np.array([beam_x - column, beam_y - row, 0])
            stored = pixel_position(det["module"], 19 - row, column)  # np.rot90(image, -1)
            np.testing.assert_allclose(stored, read_out, atol=1e-12)
            assert f["/entry/data/data"][0, column, 19 - row] == frames[0][row, column]


def test_general_detector_stays_plain_nexus(tmp_path, sender):
    target = tmp_path / "zyla.h5"
    frames = synthetic_frames(2, (20, 30), "uint16")
    receiver, snap = run_series(
        make_config(sender.port, tmp_path), sender, internal_series(frames, str(target))
    )
    receiver.close()
    assert snap.frames_written == 2
    with h5py.File(target, "r") as f:
        assert "definition" not in f["/entry"] and "sample" not in f["/entry"]
        assert set(f["/entry/instrument/detector"]) == {"data", "sequence_number"}


def nxdetector_file(path: Path) -> h5py.File:
    """An open file laid out as the writer lays it out, with a 2 x 4 x 5 detector dataset."""
    f = h5py.File(path, "w")
    f.create_group("entry").attrs["NX_class"] = "NXentry"
    f["entry"].create_group("instrument").attrs["NX_class"] = "NXinstrument"
    det = f.create_group("entry/instrument/detector")
    det.attrs["NX_class"] = "NXdetector"
    data = det.create_dataset("data", data=np.zeros((2, 4, 5), np.uint16))
    f["entry"].create_group("data").attrs.update({"NX_class": "NXdata", "signal": "data"})
    f["entry/data/data"] = data
    return f


def test_existing_fields_get_units_and_odd_values_placeholders(tmp_path, caplog):
    """What the drop-in writer put in the detector group stays, one dataset with @units; odd
    metadata never raises, is logged once, and the file still validates."""
    target = tmp_path / "odd.h5"
    metadata = {
        "config": {
            "count_time": 0.25,
            "x_pixel_size": "75 um",
            "sensor_thickness": float("nan"),
            "beam_center_x": True,
            "wavelength": 1.0,
            "sensor_material": "Si",
            "data_collection_date": "2011/Mar/16 15:20:09.183",
        },
        "pixel_mask": np.zeros((4, 5), np.uint32),
    }
    nxmx = Nxmx(STREAM_V1, NexusConfig(instrument_name="BioMAX"))
    with (
        nxdetector_file(target) as f,
        caplog.at_level(logging.WARNING, logger="tango_receiver.engine.nxmx"),
    ):
        det = f["entry/instrument/detector"]
        det["count_time"] = 0.25  # as the drop-in writer stores a config key, without units
        for _ in range(2):  # a second series appended to the same file changes nothing
            nxmx.write(det, metadata, (4, 5), 2)
        assert det["count_time"][()] == 0.25 and det["count_time"].attrs["units"] == "s"
        assert np.isnan(det["sensor_thickness"][()]) and "x_pixel_size" not in det
        assert "beam_center_x" not in det and "module_offset" not in det["module"]
        assert text(f["/entry/instrument/name"]) == "BioMAX"
        assert datetime.fromisoformat(text(f["/entry/start_time"])).tzinfo  # receiver clock
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 2, told
    assert "x_pixel_size = '75 um'" in told[0] and "beam_center_x = True" in told[0]
    assert "start_time = '2011/Mar/16" in told[0]
    assert "sensor_thickness, x_pixel_size" in told[1]
    assert nxmx_errors(target) == 0


def test_a_group_where_nxmx_has_a_field_is_left_and_named(tmp_path, caplog):
    """A per-channel map stored as a group under an NXmx field name (stream v2 ``pixel_mask``)
    is not overwritten; the log says which."""
    with (
        nxdetector_file(tmp_path / "group.h5") as f,
        caplog.at_level(logging.WARNING, logger="tango_receiver.engine.nxmx"),
    ):
        det = f["entry/instrument/detector"]
        det.create_group("pixel_mask").create_dataset("threshold_1", data=np.zeros((4, 5)))
        Nxmx(STREAM_V1, NexusConfig()).write(
            det, {"pixel_mask": np.ones((4, 5), np.uint32)}, (4, 5), 2
        )
        assert isinstance(det["pixel_mask"], h5py.Group)
    assert (
        "groups where NXmx has fields, left as they are: "
        "/entry/instrument/detector/pixel_mask" in caplog.text
    )


def test_layout_dectris_master_and_data_files_read_by_fabio(tmp_path, sender, fixtures_dir):
    """``layout: dectris``: ``_master.h5`` linking ``_data_00000N.h5`` files of at most
    ``images_per_file`` frames; fabio reads every frame bit-exact through the master."""
    messages = capture_v1(
        fixtures_dir / "captured" / "eiger-stream-v1-eiger1-1m.zip", str(tmp_path / "scan.h5")
    )
    expected = [decode_chunk(m[2], (1065, 1030), np.dtype("<u4")) for m in messages[1:-1]]
    config = make_config(
        sender.port,
        tmp_path,
        "Eiger",
        layout="dectris",
        images_per_file=4,
        dset_name=f"{EIGER}/data",
    )
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert snap.frames_written == 9  # (the capture announces 100000 images: never complete)
    master = tmp_path / "scan_master.h5"
    assert sorted(p.name for p in tmp_path.glob("scan*")) == [
        "scan_data_000001.h5",
        "scan_data_000002.h5",
        "scan_data_000003.h5",
        "scan_master.h5",
    ]
    assert nxmx_errors(master) == 0
    image = fabio.open(str(master))
    assert image.nframes == 9
    for i, frame in enumerate(expected):
        assert np.array_equal(image.getframe(i).data, frame), i
    with h5py.File(master, "r") as f:
        data = f[f.attrs["default"]][f["entry"].attrs["default"]]  # the default plot
        signal = data[data.attrs["signal"]]
        assert data.attrs["signal"] == "data_000001" and signal.shape == (4, 1065, 1030)
        ranges = [
            (
                data[f"data_00000{n}"].attrs["image_nr_low"],
                data[f"data_00000{n}"].attrs["image_nr_high"],
            )
            for n in (1, 2, 3)
        ]
        assert ranges == [(1, 4), (5, 8), (9, 9)]
        assert list(f[f"{EIGER}/sequence_number"][()]) == list(range(9))
        assert f[f"{EIGER}/module/data_size"][()].tolist() == [1065, 1030]
        for n, first in ((1, 0), (2, 4), (3, 8)):  # the chunks as the detector sent them
            assert (
                data[f"data_00000{n}"].id.read_direct_chunk((0, 0, 0))[1] == messages[first + 1][2]
            )
    # a master that exists is never laid out again
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert "layout dectris writes new files only" in snap.error


def test_layout_dectris_long_series_rolls_files_under_fast_lane_runs(tmp_path, sender):
    """Runs of the compiled lane never cross a data file's end: 50 frames, 7 a file."""
    frames = synthetic_frames(5, (40, 30), "uint32", rate=1.0)
    config = make_config(sender.port, tmp_path, "Eiger", layout="dectris", images_per_file=7)
    receiver, snap = run_series(
        config, sender, eiger_v1_series(frames, str(tmp_path / "long_master.h5"), count=50)
    )
    receiver.close()
    assert (snap.frames_written, snap.series_complete) == (50, True)
    assert len(list(tmp_path.glob("long_data_*.h5"))) == 8
    image = fabio.open(str(tmp_path / "long_master.h5"))
    assert image.nframes == 50
    for i in range(50):
        assert np.array_equal(image.getframe(i).data, frames[i % 5]), i
