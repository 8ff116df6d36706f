"""Property (issue 19): whatever a header, image or end message carries in any field, for
every detector class, the receiver stays alive and the next valid series is written bit for
bit as a receiver that never saw the hostile messages writes it.

Messages go over a real socket; every field of a valid message from the class's simulator (and
the fields the decoders read that the simulator leaves out) takes wrong types and extreme values:
strings, lists, null, negative numbers, 2**63, huge shapes, NaN.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cbor2
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_config, wait_for
from tango_receiver.detector import detector_classes
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.formats import series_for
from tango_receiver.sim.lambda_ import ModuleSenders, lambda_series
from tango_receiver.sim.sender import Sender

#: every class the package ships -> its simulator (classes other tests define are left out)
FORMATS = {
    name: cls.simulator.name
    for name, cls in detector_classes().items()
    if cls.__module__ == "tango_receiver.detector"
}
MODULES = 2
#: fields some decoder reads that a simulator's valid message may not carry
EXTRA_KEYS = [
    "nimages",
    "filename",
    "series_id",
    "series",
    "save_raw",
    "msg_number",
    "frame",
    "shape",
    "type",
    "compression",
    "channels",
    "name",
    "number_of_images",
    "image_id",
    "user_data",
    "header_detail",
    "ntrigger",
    "encoding",
    "x",
    "y",
    "rotation",
    "full_shape",
]
HOSTILE = st.one_of(
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.floats(),
    st.integers(max_value=-1),
    st.sampled_from([0, 2**31, 2**63 - 1, 2**63, 2**64, 10**9]),
    st.lists(st.integers(-2, 2**64), max_size=3),
    st.lists(st.integers(2**16, 2**40), min_size=2, max_size=3),  # huge shapes
    st.lists(st.text(max_size=2), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def valid_streams(cls_name: str, filename: str) -> list[list[list[bytes]]]:
    """One valid series per upstream socket (a Lambda: one per module)."""
    if cls_name == "Lambda":
        rng = np.random.default_rng(7)
        frames = [rng.integers(0, 4096, (MODULES, 12, 20), dtype=np.uint16) for _ in range(3)]
        return [list(s) for s in lambda_series(frames, filename)]
    shape, dtype = ((16, 12), "int32") if cls_name == "Pilatus" else ((16, 12), "uint16")
    return [
        [
            [bytes(p) for p in m]
            for m in series_for(FORMATS[cls_name], shape, dtype, count=3, filename=filename)
        ]
    ]


def mutate(parts: list[bytes], index: int, key: str, value, cbor: bool) -> list[bytes] | None:
    """The message with field ``key`` of part ``index`` set to ``value``; None when that part
    is not a JSON object or CBOR map (a blob)."""
    try:
        head = cbor2.loads(parts[index]) if cbor else json.loads(parts[index])
    except ValueError:
        return None
    if not isinstance(head, dict):
        return None
    head[key] = value
    out = list(parts)
    out[index] = cbor2.dumps(head) if cbor else json.dumps(head).encode()
    return out


class Upstream:
    """The class's upstream sockets, and how a message reaches all of them."""

    def __init__(self, cls_name: str) -> None:
        self.modules = ModuleSenders([0] * MODULES) if cls_name == "Lambda" else None
        self.sender = None if self.modules else Sender(timeout_s=20)

    @property
    def endpoints(self) -> list[str]:
        return self.modules.endpoints if self.modules else [self.sender.endpoint]

    def send_one(self, parts: list[bytes]) -> None:
        if self.modules:
            self.modules.send_set([parts] * MODULES)  # every module says the same
        else:
            self.sender.send([parts])

    def send_series(self, streams: list[list[list[bytes]]]) -> None:
        if self.modules:
            self.modules.send(streams)
        else:
            self.sender.send(streams[0])

    def close(self) -> None:
        (self.modules or self.sender).close()


#: when the series was written (NXmx): the wall clock, not what was received; and each frame's
#: exposure times, which frames the compiled lane took hold as NaN (it does not read them)
WALL_CLOCK = {
    "entry/start_time",
    "entry/end_time_estimated",
    *(f"entry/instrument/detector/{name}" for name in ("start_time", "stop_time", "real_time")),
}


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of the file but the wall-clock ones."""
    with h5py.File(path, "r") as f:
        out: dict[str, np.ndarray] = {}
        f.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[()])
                if isinstance(obj, h5py.Dataset) and name not in WALL_CLOCK
                else None
            )
        )
    return out


def send_series(
    cls_name: str, streams, upstream: Upstream, receiver: Receiver, target: Path
) -> None:
    count = receiver.snapshot().series_count
    upstream.send_series(streams)
    wait_for(
        lambda: (
            (s := receiver.snapshot()).series_count > count
            and not s.in_series
            and s.filename == str(target)
        ),
        20,
        f"the valid {cls_name} series to {target}",
    )


def write_series(
    cls_name: str, streams, upstream: Upstream, receiver: Receiver, target: Path
) -> dict[str, np.ndarray]:
    send_series(cls_name, streams, upstream, receiver, target)
    snap = receiver.snapshot()
    assert snap.series_complete and snap.frames_written == 3, repr(snap.as_dict())
    return read_all(target)


def config_for(cls_name: str, root: Path, upstream: Upstream):
    nworkers = 1 if cls_name == "Lambda" else 2  # workers too must survive
    return make_config(
        9999, root, cls_name, upstream=upstream.endpoints, nworkers=nworkers, gap_timeout_s=1.0
    )


@pytest.mark.parametrize("cls_name", sorted(FORMATS))
def test_hostile_fields_never_stop_the_receiver(tmp_path, cls_name):
    target = tmp_path / "valid.h5"
    streams = valid_streams(cls_name, str(target))
    cbor = cls_name == "DectrisStream2"
    templates = valid_streams(cls_name, str(tmp_path / "hostile.h5"))[0]  # not the valid file
    upstream = Upstream(cls_name)
    try:
        with Receiver(config_for(cls_name, tmp_path, upstream)) as clean:
            expected = write_series(cls_name, streams, upstream, clean, target)
        target.unlink()
        receiver = Receiver(config_for(cls_name, tmp_path, upstream))
        receiver.start()
        try:

            @settings(
                max_examples=40,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(data=st.data())
            def send_hostile(data):
                for _ in range(data.draw(st.integers(1, 3))):
                    parts = data.draw(st.sampled_from(templates))
                    index = data.draw(st.integers(0, len(parts) - 1))
                    key = data.draw(
                        st.sampled_from(EXTRA_KEYS)
                        | st.sampled_from(sorted(_keys(parts[index], cbor)) or EXTRA_KEYS)
                    )
                    hostile = mutate(parts, index, key, data.draw(HOSTILE), cbor)
                    if hostile is not None:
                        upstream.send_one(hostile)

            send_hostile()
            time.sleep(1.5)  # stragglers of the last hostile series leave the ordering
            assert receiver.health() == "", receiver.health()
            # A hostile header may have left a series open; with two workers a frame can
            # overtake its header and join that open series. A first valid series closes it.
            closer = tmp_path / "closer.h5"
            send_series(cls_name, valid_streams(cls_name, str(closer)), upstream, receiver, closer)
            got = write_series(cls_name, streams, upstream, receiver, target)
            assert receiver.health() == "" and receiver._engine.is_alive()
            assert all(w.is_alive() for w in receiver._workers)
        finally:
            receiver.close()
    finally:
        upstream.close()
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        numeric = np.asarray(value).dtype.kind in "fc"  # NXmx placeholders are NaN
        assert np.array_equal(got[name], value, equal_nan=numeric), name


def _keys(part: bytes, cbor: bool) -> set[str]:
    try:
        head = cbor2.loads(part) if cbor else json.loads(part)
    except ValueError:
        return set()
    return {k for k in head if isinstance(k, str)} if isinstance(head, dict) else set()
