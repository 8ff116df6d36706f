"""The secondary port against its two documented readers, for every detector class: the README's
recipe (run as the README prints it) and ``tango_receiver.client``, over real sockets from a
live receiver. Every forwarded image must decode, by both, bit for bit to what the detector's
frame becomes in the receiver (CBF decoded and rotated, Mono12p unpacked, modules stacked, ...).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import make_config, wait_for, wait_series_done
from tango_receiver.client import Consumer, HeaderMessage, ImageMessage, SeriesEndMessage
from tango_receiver.codecs.bslz4 import encode_chunk
from tango_receiver.detector import Xspress3
from tango_receiver.engine.forwarder import Forwarder
from tango_receiver.engine.receiver import Receiver
from tango_receiver.lane import AVAILABLE as LANE_BUILT
from tango_receiver.sim.eiger_v1 import eiger_v1_series
from tango_receiver.sim.internal import encoded_series
from tango_receiver.sim.lambda_ import ModuleSenders, lambda_series
from tango_receiver.sim.orca import orca_series
from tango_receiver.sim.pilatus import pilatus_series
from tango_receiver.sim.stream_v2 import stream_v2_series
from tango_receiver.sim.xspress3 import scalers_for, xspress3_series

README = Path(__file__).resolve().parents[2] / "README.md"
FRAMES = 4
Expected = list[dict[str, np.ndarray]]  # per image: channel name -> array


def readme_recipe() -> str:
    """The README's recipe for users who cannot import the package, as printed."""
    block = re.search(r"<!-- recipe -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no recipe block after <!-- recipe -->"
    return block.group(1)


def readme_decode() -> Callable:
    """``decode`` exactly as the README's recipe defines it (the block up to the socket)."""
    code = readme_recipe().split("\nsocket = ")[0]
    namespace: dict = {}
    exec(compile(code, "README.md recipe", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["decode"]


def frames_of(shape: tuple[int, ...], dtype: str, seed: int = 0) -> list[np.ndarray]:
    """Distinct frames with the full range of the type, so every bit is checked."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return [rng.normal(0, 1e3, shape).astype(dt) for _ in range(FRAMES)]
    info = np.iinfo(dt)
    return [rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True) for _ in range(FRAMES)]


def received(config, send: Callable[[], None], images: int = FRAMES) -> list:
    """One series through a live receiver with a client connected first: what it forwarded."""
    receiver = Receiver(config)
    receiver.open()
    try:
        with Consumer(f"tcp://127.0.0.1:{receiver.secondary_port}", timeout_s=10) as stream:
            wait_for(lambda: receiver.snapshot().consumers == 1, 10, "the consumer to connect")
            receiver.start()
            send()
            snap = wait_series_done(receiver)
            assert snap.frames_invalid == snap.frames_missing == 0, snap.messages
            messages = []
            for message in itertools.islice(stream, images + 2):
                messages.append(message)
                if isinstance(message, SeriesEndMessage):
                    break
            assert stream.missing == 0
    finally:
        receiver.close()
    return messages


def check(messages: list, expected: Expected) -> None:
    """Both readers give every image bit for bit; the series is whole and in order."""
    decode = readme_decode()
    assert isinstance(messages[0], HeaderMessage) and isinstance(messages[-1], SeriesEndMessage)
    images = messages[1:-1]
    assert all(isinstance(m, ImageMessage) for m in images)
    assert [m.frame for m in images] == list(range(len(expected)))
    assert all(m.position.missing == 0 and not m.position.late for m in messages)
    for message, arrays in zip(images, expected, strict=False):
        got = message.arrays
        assert list(got) == list(arrays)
        # the README's loop: one spec per blob, from "channels" or the header itself
        head = message.head
        recipe = [
            decode(spec, blob)
            for spec, blob in zip(head.get("channels", [head]), message.blobs, strict=False)
        ]
        assert len(recipe) == len(arrays)
        for (name, want), mine, theirs in zip(arrays.items(), got.values(), recipe, strict=False):
            for array in (mine, theirs):
                assert array.dtype == want.dtype and array.shape == want.shape, name
                assert array.tobytes() == want.tobytes(), f"frame {message.frame} {name}"
        if len(arrays) == 1:
            assert message.array.tobytes() == next(iter(arrays.values())).tobytes()


def run(tmp_path, sender, cls: str, messages: list, expected: Expected, **options) -> list:
    config = make_config(sender.port, tmp_path, cls, **options)
    got = received(config, lambda: sender.send(messages), len(expected))
    check(got, expected)
    return got


# --- the general case: the internal format, forwarded as it came ----------------------------
@pytest.mark.parametrize(
    "dtype, shape",
    [
        ("uint8", (37, 11)),
        ("uint16", (64, 48)),
        ("int16", (5, 7, 9)),
        ("uint32", (1000,)),
        ("int32", (17, 3)),
        ("uint64", (33, 5)),
        ("int64", (8, 8)),
        ("float32", (40, 30)),
        ("float64", (3, 129)),
        ("float16", (6, 10)),
    ],
)
@pytest.mark.parametrize("compression", ["bslz4", "none"])
def test_general_case_every_type(tmp_path, sender, dtype, shape, compression):
    frames = frames_of(shape, dtype)
    images = [
        (
            {"shape": list(shape), "type": dtype, "compression": compression},
            [encode_chunk(f) if compression == "bslz4" else f.tobytes()],
        )
        for f in frames
    ]
    run(tmp_path, sender, "Detector", list(encoded_series(images)), [{"data": f} for f in frames])


def test_general_case_several_channels(tmp_path, sender):
    low, high = frames_of((20, 30), "uint16", 1), frames_of((20, 30), "float32", 2)
    images = [
        (
            {
                "shape": [20, 30],
                "type": "uint16",
                "compression": "bslz4",
                "channels": [
                    {"name": "low", "shape": [20, 30], "type": "uint16", "compression": "bslz4"},
                    {"name": "high", "shape": [20, 30], "type": "float32"},
                ],
            },
            [encode_chunk(a), b.tobytes()],
        )
        for a, b in zip(low, high, strict=False)
    ]
    run(
        tmp_path,
        sender,
        "Detector",
        list(encoded_series(images)),
        [{"low": a, "high": b} for a, b in zip(low, high, strict=False)],
    )


# --- EIGER stream v1: chunks as they came (compiled lane or Python), or decoded -------------
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
@pytest.mark.parametrize("fast_lane", [True, False])
def test_eiger_stream_v1(tmp_path, sender, monkeypatch, dtype, fast_lane):
    """Enough frames for the compiled lane to take the form after the first batch."""
    runs = []
    send_run = Forwarder.send_run
    monkeypatch.setattr(
        Forwarder, "send_run", lambda self, run: runs.append(len(run)) or send_run(self, run)
    )
    frames = frames_of((48, 36), dtype)
    count = 150
    run(
        tmp_path,
        sender,
        "Eiger",
        list(eiger_v1_series(frames, count=count)),
        [{"data": frames[i % FRAMES]} for i in range(count)],
        fast_lane=fast_lane,
    )
    assert bool(runs) == (fast_lane and LANE_BUILT)


def test_eiger_stream_v1_raw_encoding_is_forwarded_raw(tmp_path, sender):
    frames = frames_of((10, 12), "uint16")
    messages = list(eiger_v1_series(frames))
    for parts in messages[1:-1]:
        parts[1] = json.dumps(json.loads(parts[1]) | {"encoding": "<"}).encode()
        parts[2] = frames[json.loads(parts[0])["frame"]].tobytes()
    got = run(tmp_path, sender, "Eiger", messages, [{"data": f} for f in frames])
    assert {m.head["compression"] for m in got[1:-1]} == {"none"}


# --- DECTRIS stream v2: one channel per threshold -------------------------------------------
@pytest.mark.parametrize("compression", ["bslz4", "lz4", None])
def test_stream_v2_thresholds(tmp_path, sender, compression):
    one, two = frames_of((30, 20), "uint32", 3), frames_of((30, 20), "uint32", 4)
    messages = list(
        stream_v2_series({"threshold_1": one, "threshold_2": two}, compression=compression)
    )
    run(
        tmp_path,
        sender,
        "DectrisStream2",
        messages,
        [{"threshold_1": a, "threshold_2": b} for a, b in zip(one, two, strict=False)],
    )


def test_stream_v2_single_threshold(tmp_path, sender):
    frames = frames_of((16, 24), "uint16", 5)
    got = run(
        tmp_path,
        sender,
        "DectrisStream2",
        list(stream_v2_series({"threshold_1": frames})),
        [{"threshold_1": f} for f in frames],
    )
    assert got[1].head["channels"][0]["name"] == "threshold_1"


# --- pixels made in the receiver: forwarded as stored ---------------------------------------
@pytest.mark.parametrize("options", [{}, {"compress": False, "rotate": True}])
def test_pilatus_cbf_decoded(tmp_path, sender, options):
    frames = frames_of((24, 36), "int32")
    frames = [np.clip(f, -2, 2**20) for f in frames]  # CBF's byte-offset range, gaps and bad pixels
    rotated = [np.rot90(f, -1) if options.get("rotate") else f for f in frames]
    run(
        tmp_path,
        sender,
        "Pilatus",
        list(pilatus_series(frames)),
        [{"data": np.ascontiguousarray(f)} for f in rotated],
        **options,
    )


@pytest.mark.parametrize("compress", [True, False])
def test_orca_mono12p_unpacked(tmp_path, sender, compress):
    frames = [f >> 4 for f in frames_of((20, 32), "uint16", 6)]  # 12-bit values
    run(
        tmp_path,
        sender,
        "OrcaLightning",
        list(orca_series(frames)),
        [{"data": f} for f in frames],
        compress=compress,
    )


@pytest.mark.parametrize(
    "compression, compress", [("none", True), ("bslz4", True), ("bslz4", False)]
)
def test_lambda_modules_stacked(tmp_path, compression, compress):
    frames = [f >> 4 for f in frames_of((4, 12, 20), "uint16", 7)]
    with ModuleSenders([0] * 4, timeout_s=20) as modules:
        config = make_config(0, tmp_path, "Lambda", upstream=modules.endpoints, compress=compress)
        streams = [list(s) for s in lambda_series(frames, compression=compression)]
        got = received(config, lambda: modules.send(streams))
    check(got, [{"data": f} for f in frames])
    assert got[0].metadata["y"] == [0, 18, 36, 54]  # where each module sits, for assembling


def test_xspress3_spectra_and_scalers(tmp_path, sender):
    spectra = [np.abs(f) >> 8 for f in frames_of((4, 64), "int32", 8)]
    spectra = [s.astype(np.uint32) for s in spectra]
    expected = [
        {"data": s}
        | {name: np.array(scalers_for(s)[name], dtype) for name, dtype in Xspress3.SCALERS.items()}
        for s in spectra
    ]
    run(tmp_path, sender, "Xspress3", list(xspress3_series(spectra)), expected)


def test_readme_recipe_runs_as_printed(tmp_path, sender):
    """The whole recipe, socket and loop included, with its endpoint pointed at a live
    receiver and its loop bounded: what it decodes is what was sent."""
    one, two = frames_of((30, 20), "uint16", 9), frames_of((30, 20), "uint16", 10)
    receiver = Receiver(make_config(sender.port, tmp_path, "DectrisStream2"))
    receiver.open()
    code = readme_recipe().replace(
        "tcp://receiver-host:9100", f"tcp://127.0.0.1:{receiver.secondary_port}"
    )
    setup, loop = code.split("while True:")
    assert loop.rstrip().endswith("parts[1:])]")
    loop = f"for _ in range({FRAMES + 2}):" + loop + "        got.append(arrays)\n"
    namespace: dict = {"got": []}
    try:
        exec(compile(setup, "README.md recipe", "exec"), namespace)  # noqa: S102 - our README
        wait_for(lambda: receiver.snapshot().consumers == 1, 10, "the recipe to connect")
        receiver.start()
        sender.send(stream_v2_series({"threshold_1": one, "threshold_2": two}))
        wait_series_done(receiver)
        exec(compile(loop, "README.md recipe loop", "exec"), namespace)  # noqa: S102
    finally:
        if "socket" in namespace:
            namespace["socket"].close(linger=0)
            namespace["socket"].context.term()
        receiver.close()
    assert [[a.tobytes() for a in arrays] for arrays in namespace["got"]] == [
        [a.tobytes(), b.tobytes()] for a, b in zip(one, two, strict=False)
    ]
