"""Every detector of the beamlines, from its simulator through a real socket into HDF5.

What is read back is compared with a reference computed here from what was sent (CBF: the
image after the configured ToT / rotate / mask; Mono12p: the 12-bit values; Lambda: the module
planes), and malformed input of each kind is counted as invalid while the series goes on.
"""

from __future__ import annotations

import json
from pathlib import Path

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import make_config, run_series, run_with_consumer, wait_for, wait_series_done
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.codecs.cbf import MARKER
from tango_receiver.codecs.mono12p import pack
from tango_receiver.config import ConfigError, load_config
from tango_receiver.detector import Lambda, Pilatus, Xspress3, detector_for, simulators
from tango_receiver.engine.receiver import Receiver
from tango_receiver.modules import ModuleAligner, ModuleGap, Position
from tango_receiver.sim.formats import formats, series_for
from tango_receiver.sim.lambda_ import ModuleSenders, lambda_series
from tango_receiver.sim.orca import orca_series
from tango_receiver.sim.pilatus import pilatus_series
from tango_receiver.sim.profiles import PROFILES
from tango_receiver.sim.xspress3 import scalers_for, xspress3_series

REPO = Path(__file__).resolve().parents[2]
META = {"sample": "lysozyme", "beam": {"energy_eV": 12400}}


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def forwarded_pixels(parts: list[bytes]) -> list[np.ndarray]:
    """A secondary-port image decoded from the documented format alone."""
    head = json.loads(parts[0])
    specs = head.get("channels") or [head]
    planes = []
    for spec, blob in zip(specs, parts[1:], strict=False):
        shape, dtype = tuple(spec["shape"]), np.dtype(spec["type"])
        if spec["compression"] == "bslz4":
            planes.append(
                bitshuffle.decompress_lz4(np.frombuffer(blob, np.uint8, offset=12), shape, dtype)
            )
        else:
            planes.append(np.frombuffer(blob, dtype).reshape(shape))
    return planes


def assert_clean(snap, frames: int, forwarded: bool = True) -> None:
    assert (snap.frames_received, snap.frames_written) == (frames, frames)
    assert snap.frames_forwarded == (frames if forwarded else 0)
    assert snap.frames_invalid == snap.frames_missing == 0 and snap.series_complete


def image_bytes(messages: list[list[bytes]]) -> int:
    """What ``bytes_wire`` must count: the image messages as sent, before any decoding."""
    return sum(len(part) for message in messages if b'"image"' in message[0] for part in message)


def assert_metadata(f: h5py.File, group: str) -> None:
    assert f[f"{group}/metadata/sample"][()] == b"lysozyme"
    assert f[f"{group}/metadata/beam/energy_eV"][()] == 12400


def invalid_texts(snap) -> list[str]:
    return [m for m in snap.messages if "invalid message" in m]


# --- Pilatus: CBF -> (ToT, rotate, mask) -> bitshuffle-LZ4 -----------------------------------
def pilatus_frames(count: int, shape=(24, 36), seed: int = 0) -> list[np.ndarray]:
    """Counts with a gap row (-1) and a bad pixel (-2), as a Pilatus writes them."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        frame = rng.poisson(4.0, shape).astype(np.int32)
        frame[7] = -1
        frame[3, 5] = -2
        frames.append(frame)
    return frames


def reference(
    frame: np.ndarray, table: np.ndarray | None = None, rotate: bool = False, regions: tuple = ()
) -> np.ndarray:
    """What the legacy PilatusPipeline stored, written out pixel by pixel."""
    image = frame.copy()
    if table is not None:
        depth = table.shape[2]
        image = np.empty(frame.shape, np.float32)
        for (r, c), value in np.ndenumerate(frame):
            image[r, c] = (
                table[r, c, value] if 0 <= value < depth else (-1.0 if value < 0 else -2.0)
            )
    if rotate:
        image = np.rot90(image, -1).copy()
    for r0, r1, c0, c1 in regions:
        image[r0:r1, c0:c1] = -1
    return image


@pytest.fixture
def tot_table(tmp_path) -> tuple[str, np.ndarray]:
    table = np.random.default_rng(3).uniform(1.0, 30.0, (24, 36, 6))  # float64, as calibrated
    path = tmp_path / "tot.npz"
    np.savez(path, tot_to_energy_tensor=table)
    return str(path), table


@pytest.mark.parametrize(
    "case", ["plain", "legacy-pipeline-rotate-mask", "tot-regions", "uncompressed"]
)
def test_pilatus_cbf_series(tmp_path, sender, tot_table, case):
    frames = pilatus_frames(5)
    target = tmp_path / f"pilatus_{case}.h5"
    dset = "/entry/instrument/pilatus/data"
    cls, options, expected = "Pilatus", {}, [reference(f) for f in frames]
    if case == "legacy-pipeline-rotate-mask":  # the form existing deployments use
        cls, options = (
            "Detector",
            {"pipeline": "PilatusPipeline", "rotate": True, "mask": [[0, 10], [0, 20]]},
        )
        expected = [reference(f, rotate=True, regions=[(0, 10, 0, 20)]) for f in frames]
    elif case == "tot-regions":
        path, table = tot_table
        options = {"tot": path, "mask": [[0, 2, 0, 3], [20, 30, 30, 40]]}
        expected = [reference(f, table, regions=[(0, 2, 0, 3), (20, 30, 30, 40)]) for f in frames]
    elif case == "uncompressed":
        options = {"compress": False}
    config = make_config(sender.port, tmp_path, cls, dset_name=dset, **options)
    assert isinstance(detector_for(config), Pilatus)
    messages = list(pilatus_series(frames, str(target), META))
    snap, forwarded = run_with_consumer(config, sender, messages)
    assert_clean(snap, 5)
    assert snap.bytes_wire == image_bytes(messages)  # the CBF files, not what was stored
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (5, *expected[0].shape) and data.dtype == expected[0].dtype
        for i, image in enumerate(expected):
            assert np.array_equal(data[i], image)
        assert_metadata(f, "/entry/instrument/pilatus")
    heads = [json.loads(m[0]) for m in forwarded]
    assert [h["htype"] for h in heads] == ["header"] + ["image"] * 5 + ["series_end"]
    assert {h["compression"] for h in heads[1:-1]} == {
        "none" if case == "uncompressed" else "bslz4"
    }
    for message, image in zip(forwarded[1:-1], expected, strict=False):
        assert np.array_equal(forwarded_pixels(message)[0], image)


def test_pilatus_malformed_cbf_is_counted_and_the_series_goes_on(tmp_path, sender):
    frames = pilatus_frames(3)
    target = tmp_path / "pilatus_bad.h5"
    good = list(pilatus_series(frames, str(target)))
    head, blob = json.loads(good[2][0]), good[2][1]
    bad = [
        [good[2][0], blob[: blob.index(MARKER) + 100]],  # truncated CBF
        [j(head | {"shape": [36, 24]}), blob],  # header disagrees with the CBF
        [j(head | {"compression": "bslz4"}), encode_chunk(frames[1])],  # not a CBF
        [good[2][0]],  # no blob
    ]
    config = make_config(sender.port, tmp_path, "Pilatus")
    receiver, snap = run_series(config, sender, [*good[:2], *bad, *good[2:]])
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (3, 4, 0)
    texts = invalid_texts(snap)
    assert any("frame 1: CBF truncated" in t for t in texts), texts
    assert all(t.startswith("test-pilatus:") for t in texts)
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_pilatus_options_are_checked_at_load(tmp_path):
    with pytest.raises(ConfigError, match="'test-pilatus': key 'mask': mask region"):
        make_config(1, tmp_path, "Pilatus", mask=[[5, 2], [0, 3]])
    np.savez(tmp_path / "empty.npz", other=np.zeros(3))
    with pytest.raises(ConfigError, match="key 'tot': .*tot_to_energy_tensor"):
        make_config(1, tmp_path, "Pilatus", tot=str(tmp_path / "empty.npz"))
    with pytest.raises(ConfigError, match="key 'rotate': True would be ignored by class Eiger"):
        make_config(1, tmp_path, "Eiger", rotate=True)
    with pytest.raises(ConfigError, match="key 'pipeline': unknown pipeline 'Nonesuch'"):
        make_config(1, tmp_path, "Detector", pipeline="Nonesuch")


# --- Orca Lightning: Mono12p -> uint16 -> bitshuffle-LZ4 -------------------------------------
def twelve_bit(count: int, shape=(20, 32), seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, shape, dtype=np.uint16) for _ in range(count)]


@pytest.mark.parametrize(
    "cls, options", [("OrcaLightning", {}), ("Detector", {"pipeline": "OrcaPipeline"})]
)
def test_orca_mono12p_series(tmp_path, sender, cls, options):
    frames = twelve_bit(6)
    target = tmp_path / "orca.h5"
    config = make_config(
        sender.port, tmp_path, cls, dset_name="/entry/instrument/orca/data", **options
    )
    snap, forwarded = run_with_consumer(config, sender, orca_series(frames, str(target), META))
    assert_clean(snap, 6)
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.dtype == np.uint16
        assert np.array_equal(data[()], np.stack(frames))
        assert_metadata(f, "/entry/instrument/orca")
    for message, frame in zip(forwarded[1:-1], frames, strict=False):
        assert json.loads(message[0])["type"] == "uint16"
        assert np.array_equal(forwarded_pixels(message)[0], frame)


def test_orca_wrong_mono12p_length_is_counted(tmp_path, sender):
    frames = twelve_bit(3)
    target = tmp_path / "orca_bad.h5"
    good = list(orca_series(frames, str(target)))
    head = json.loads(good[2][0])
    bad = [
        [good[2][0], good[2][1][:-3]],  # a pixel pair short
        [j(head | {"shape": [3, 5]}), pack(np.zeros(16, np.uint16))[:22]],  # odd pixel count
        [j(head | {"compression": "bslz4"}), good[2][1]],  # packed and compressed?
    ]
    sixteen_bit = [
        j(json.loads(good[3][0]) | {"type": "uint16", "compression": "none"}),
        frames[2].tobytes(),
    ]  # a 16-bit mode frame
    receiver, snap = run_series(
        make_config(sender.port, tmp_path, "OrcaLightning"),
        sender,
        [*good[:2], *bad, good[2], sixteen_bit, good[4]],
    )
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (3, 3, 0)
    assert any(
        "frame 1: Mono12p frame of shape (20, 32) needs 960 bytes, got 957" in t
        for t in invalid_texts(snap)
    )
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


# --- Lambda: four module sockets -> one [frame, module, y, x] dataset ------------------------
def module_frames(count: int, modules: int = 4, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 4096, (modules, 12, 20), dtype=np.uint16) for _ in range(count)]


@pytest.fixture
def modules():
    with ModuleSenders([0] * 4, timeout_s=20) as senders:
        yield senders


def lambda_config(tmp_path, modules):
    return make_config(
        0, tmp_path, "Lambda", upstream=modules.endpoints, dset_name="/entry/instrument/lambda/data"
    )


def run_lambda(config, modules, streams, series_count: int = 1):
    receiver = Receiver(config)
    receiver.start()
    modules.send(streams)
    return receiver, wait_series_done(receiver, series_count)


@pytest.mark.parametrize("compression", ["none", "bslz4"])
def test_lambda_modules_into_one_dataset(tmp_path, modules, compression):
    frames = module_frames(5)
    target = tmp_path / "lambda.h5"
    streams = [
        list(stream) for stream in lambda_series(frames, str(target), META, compression=compression)
    ]
    snap, forwarded = run_with_consumer(lambda_config(tmp_path, modules), modules, streams)
    assert_clean(snap, 5)
    assert snap.bytes_wire == sum(image_bytes(stream) for stream in streams)  # all 4 modules
    with h5py.File(target, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (5, 4, 12, 20)
        assert np.array_equal(data[()], np.stack(frames))
        meta = f["/entry/instrument/lambda/metadata"]
        assert list(meta["x"][()]) == [0, 0, 0, 0]
        assert list(meta["y"][()]) == [0, 18, 36, 54]
        assert list(meta["rotation"][()]) == [0, 0, 0, 0]
        assert list(meta["full_shape"][()]) == [66, 20]
        assert_metadata(f, "/entry/instrument/lambda")
    assert json.loads(forwarded[0][1])["y"] == [0, 18, 36, 54]
    for message, frame in zip(forwarded[1:-1], frames, strict=False):
        assert np.array_equal(forwarded_pixels(message)[0], frame)


def test_lambda_module_mismatch_is_one_invalid_frame(tmp_path, modules):
    """A module that lost a message, and modules that disagree: each costs its own frame."""
    frames = module_frames(6)
    target = tmp_path / "lambda_mismatch.h5"
    streams = [list(s) for s in lambda_series(frames, str(target))]
    del streams[2][3]  # module 2 never sends msg_number 3 (frame 2)
    streams[1][5] = [j({"htype": "series_end", "msg_number": 5})]  # module 1 ends early
    receiver, snap = run_lambda(lambda_config(tmp_path, modules), modules, streams)
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (4, 2, 2)
    texts = invalid_texts(snap)
    assert any(
        "image 3 (frame 2): module 2 out of step: its next message is msg_number 4" in t
        for t in texts
    ), texts
    assert any(
        "modules disagree: module 0 image 5 (frame 4), module 1 series_end 5" in t for t in texts
    ), texts
    with h5py.File(target, "r") as f:
        assert list(f["/entry/instrument/lambda/sequence_number"][()]) == [0, 1, 3, 5]
        assert np.array_equal(
            f["/entry/data/data"][()], np.stack([frames[i] for i in (0, 1, 3, 5)])
        )


def test_lambda_missing_module_is_reported_and_the_next_series_works(tmp_path, modules):
    frames = module_frames(4)
    first = [list(s) for s in lambda_series(frames, str(tmp_path / "first.h5"))]
    first[3] = first[3][:3]  # module 3 goes silent after frame 1: no frames 2, 3, no end
    receiver = Receiver(lambda_config(tmp_path, modules))
    receiver.start()
    try:
        modules.send(first)
        wait_for(lambda: receiver.snapshot().frames_invalid == 3, what="3 sets reported")
        snap = receiver.snapshot()
        assert snap.frames_written == 2 and snap.in_series
        assert sum("module 3 sent nothing within 0.5 s" in t for t in invalid_texts(snap)) == 3
        modules.send(lambda_series(frames, str(tmp_path / "second.h5")))
        snap = wait_series_done(receiver, 2)
    finally:
        receiver.close()
    assert snap.series_complete and snap.frames_written == 4
    with h5py.File(tmp_path / "first.h5", "r") as f:
        assert not f["entry"].attrs["series_complete"]
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames[:2]))
    with h5py.File(tmp_path / "second.h5", "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))


def test_aligner_keeps_modules_in_step():
    """Pure rules: a module ahead is missing from the set, one behind goes alone, a silent one
    holds a set for the timeout only, and a header comes after the end of the last series."""
    now = [0.0]
    aligner = ModuleAligner(3, timeout_s=1.0, clock=lambda: now[0])

    def push(module: int, number: int, header: bool = False) -> None:
        aligner.push(module, Position(number, header), [f"m{module}#{number}"])

    for module, number in ((0, 4), (1, 4), (2, 5), (0, 5), (1, 5), (1, 5), (0, 6), (2, 6)):
        push(module, number)  # module 2 lost #4; module 1 sent #5 twice; #6 is still on its way
    push(2, 0, header=True)  # module 2 starts the next series
    sets = aligner.pop_ready()
    assert sets[0][:2] == [["m0#4"], ["m1#4"]] and isinstance(sets[0][2], ModuleGap)
    assert "out of step: its next message is msg_number 5" in sets[0][2].reason
    assert sets[1] == [["m0#5"], ["m1#5"], ["m2#5"]]
    assert isinstance(sets[2][0], ModuleGap) and sets[2][1] == ["m1#5"]  # the duplicate, alone
    assert len(sets) == 3  # #6 waits for module 1
    now[0] = 0.5
    assert aligner.pop_ready() == []
    now[0] = 1.0
    late = aligner.pop_ready()
    assert late[0][0] == ["m0#6"] and late[0][2] == ["m2#6"]
    assert "sent nothing within 1 s" in late[0][1].reason
    assert late[1][2] == ["m2#0"] and "sent nothing" in late[1][0].reason
    assert aligner.pending == 0


# --- Xspress3: spectra [frame, channel, bins] + scalers beside them --------------------------
def spectra(count: int, channels: int = 4, bins: int = 64, seed: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.poisson(20.0, (channels, bins)).astype(np.uint32) for _ in range(count)]


def test_xspress3_spectra_and_scalers(tmp_path, sender):
    frames = spectra(5)
    target = tmp_path / "xspress3.h5"
    config = make_config(
        sender.port, tmp_path, "Xspress3", dset_name="/entry/instrument/xspress3/data"
    )
    snap, forwarded = run_with_consumer(config, sender, xspress3_series(frames, str(target), META))
    assert_clean(snap, 5)
    with h5py.File(target, "r") as f:
        det = f["/entry/instrument/xspress3"]
        assert np.array_equal(det["data"][()], np.stack(frames))
        assert f["/entry/data"].attrs["signal"] == "data"
        for name, dtype in Xspress3.SCALERS.items():
            expected = np.array([scalers_for(s)[name] for s in frames], dtype=dtype)
            assert det[name].dtype == dtype and np.array_equal(det[name][()], expected), name
        assert list(det.attrs["channels"]) == ["data", *Xspress3.SCALERS]
        assert_metadata(f, "/entry/instrument/xspress3")
    head = json.loads(forwarded[1][0])
    assert [c["name"] for c in head["channels"]] == ["data", *Xspress3.SCALERS]
    planes = forwarded_pixels(forwarded[1])
    assert np.array_equal(planes[0], frames[0])
    assert np.allclose(planes[1], scalers_for(frames[0])["ocr"])


def test_xspress3_bad_shapes_are_counted(tmp_path, sender):
    frames = spectra(3)
    target = tmp_path / "xspress3_bad.h5"
    good = list(xspress3_series(frames, str(target)))
    head, blob, scalers = json.loads(good[2][0]), good[2][1], json.loads(good[2][2])
    bad = [
        [j(head | {"shape": [2, 4, 32]}), blob, good[2][2]],  # 3-D spectra
        [good[2][0], blob[:-4], good[2][2]],  # spectra blob too short
        [good[2][0], blob, j(scalers | {"dtc": [1.0, 1.0]})],  # 2 values for 4 channels
        [good[2][0], blob, j(scalers | {"AllGood": [-1, 0, 0, 0]})],  # not a uint32
        [good[2][0], blob],  # no scalers
    ]
    config = make_config(sender.port, tmp_path, "Xspress3")
    receiver, snap = run_series(config, sender, [*good[:2], *bad, *good[2:]])
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (3, 5, 0)
    texts = invalid_texts(snap)
    assert any(
        "frame 1: spectra of shape [2, 4, 32], expected [channels, bins]" in t for t in texts
    ), texts
    assert any("frame 1: scaler 'dtc' must be 4 float64 values" in t for t in texts), texts
    with h5py.File(target, "r") as f:
        assert np.array_equal(f["/entry/instrument/detector/data"][()], np.stack(frames))


# --- the general case, and the profiles that tie simulators to detectors.yaml ----------------
GENERAL = [name for name, p in PROFILES.items() if p.format == "internal"]


def test_every_profile_has_a_matching_detectors_yaml_entry():
    configs = load_config(REPO / "detectors.yaml")
    for name, profile in PROFILES.items():
        assert name in configs, name
        assert (
            tuple(configs[name].shape) == profile.shape and configs[name].dtype == profile.dtype
        ), name
        assert profile.format in simulators() and name in formats()
    assert {"pi-mte3", "dhyana", "ximea", "fastcam-nova", "rigaku", "zyla"} <= set(GENERAL)


@pytest.mark.parametrize("name", GENERAL)
def test_general_case_detector_at_its_real_shape(tmp_path, sender, name):
    """Each one's detectors.yaml entry, pointed at its simulator, real frame size and type."""
    entry = load_config(REPO / "detectors.yaml")[name]
    messages = list(series_for(name, (1, 1), "uint8", count=3, filename=str(tmp_path / "g.h5")))
    expected = [forwarded_pixels(m)[0] for m in messages[1:-1]]
    assert expected[0].shape == tuple(entry.shape) and expected[0].dtype == entry.dtype
    config = make_config(
        sender.port,
        tmp_path,
        entry.detector_class,
        dset_name=entry.dset_name,
        nworkers=entry.nworkers,
    )
    receiver, snap = run_series(config, sender, messages)
    receiver.close()
    assert_clean(snap, 3, forwarded=False)  # nobody on the secondary port
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert np.array_equal(f[entry.dset_name][()], np.stack(expected))
        assert f[f"{entry.dset_name.rsplit('/', 1)[0]}/metadata/series"][()] == 0


def test_lambda_profile_needs_one_worker(tmp_path):
    entry = load_config(REPO / "detectors.yaml")["lambda-4x750k"]
    assert isinstance(detector_for(entry), Lambda)
    with pytest.raises(ConfigError, match="key 'nworkers': class Lambda takes 1"):
        make_config(1, tmp_path, "Lambda", nworkers=2)
