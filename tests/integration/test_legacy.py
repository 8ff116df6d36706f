"""Drop-in for existing deployments: their detectors.yaml loads unchanged, every class runs, and
`streaming-receiver CONFIG NAME` serves clients written for the existing REST surface."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import bitshuffle
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import yaml

from conftest import Consumer, wait_series_done
from tango_receiver.config import load_config, parse_entry
from tango_receiver.detector import detector_for
from tango_receiver.engine.receiver import Receiver
from tango_receiver.sim.eiger_v1 import eiger_v1_series
from tango_receiver.sim.formats import series_for
from tango_receiver.sim.frames import synthetic_frames
from tango_receiver.sim.lambda_ import ModuleSenders, lambda_series
from tango_receiver.sim.sender import Sender

LEGACY = Path(__file__).resolve().parents[1] / "legacy-detectors.yaml"
ENTRIES = yaml.safe_load(LEGACY.read_text())
#: the simulator of each detector class, with a small frame of its kind
SIMULATED = {
    "Detector": ("internal", (16, 24), "uint16"),
    "OrcaLightning": ("orca", (16, 24), "uint16"),
    "Pilatus": ("pilatus", (16, 24), "int32"),
    "Eiger": ("eiger", (16, 24), "uint32"),
    "DectrisStream2": ("stream2", (16, 24), "uint16"),
    "Xspress3": ("xspress3", (4, 64), "uint32"),
}
FRAMES = 6


def test_every_entry_loads_unchanged(fixtures_dir):
    ours, theirs = load_config(LEGACY), load_config(fixtures_dir / "legacy-detectors.yaml")
    classes = {type(detector_for(c)).__name__ for c in ours.values()}
    assert classes == set(SIMULATED) | {"Lambda"}
    assert {c.detector_class for c in ours.values()} >= {
        "Detector",
        "Eiger",
        "Lambda",
        "DectrisStream2",
    }
    for config in [*ours.values(), *theirs.values()]:
        assert detector_for(config).endpoints()
    assert ours["legacy-lambda"].nworkers == 1 and ours["legacy-eiger-loadbalanced"].nworkers == 2
    assert detector_for(ours["legacy-pilatus4"]).endpoints() == ["tcp://127.0.0.1:31001"]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_each_receiver_writes_a_series_from_its_simulator(tmp_path, name):
    entry = dict(ENTRIES[name])
    kind = type(detector_for(parse_entry(name, entry))).__name__
    target = tmp_path / f"{name}.h5"
    entry |= {"write_roots": [str(tmp_path)], "data_port": 0, "data_host": "127.0.0.1"}
    if kind == "Lambda":
        frames = [np.full((4, 12, 20), i, np.uint16) for i in range(FRAMES)]
        with ModuleSenders([0] * 4, timeout_s=30) as modules:
            entry["dcu_port_purple"] = [int(e.rsplit(":", 1)[1]) for e in modules.endpoints]
            receiver = Receiver(parse_entry(name, entry))
            receiver.start()
            modules.send(lambda_series(frames, str(target)))
            snap = wait_series_done(receiver)
    else:
        fmt, shape, dtype = SIMULATED[kind]
        with Sender(timeout_s=30) as sender:
            entry["dcu_port_purple"] = sender.port
            receiver = Receiver(parse_entry(name, entry))
            receiver.start()
            sender.send(series_for(fmt, shape, dtype, FRAMES, str(target)))
            snap = wait_series_done(receiver)
    receiver.close()
    assert (snap.frames_written, snap.frames_invalid, snap.frames_missing) == (FRAMES, 0, 0)
    assert snap.series_complete
    with h5py.File(target, "r") as f:
        assert f[ENTRIES[name]["dset_name"]].shape[0] == FRAMES
        assert f["entry"].attrs["series_complete"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
        return json.loads(body) if response.headers["content-type"] == "application/json" else body


def test_streaming_receiver_serves_existing_clients(tmp_path):
    """The existing client's loop: arm, wait up to 5 s for running, poll until idle, count."""
    frames = synthetic_frames(FRAMES, (32, 40), "uint32", rate=2.0)
    api, data = free_port(), free_port()
    with Sender(timeout_s=60) as sender:
        entry = ENTRIES["legacy-eiger"] | {
            "dcu_port_purple": sender.port,
            "api_port": api,
            "data_port": data,
        }
        config = tmp_path / "detectors.yaml"
        config.write_text(yaml.safe_dump({"nanomax-eiger": entry}))
        env = os.environ | {"TANGO_RECEIVER_WRITE_ROOTS": str(tmp_path)}
        env.pop("TANGO_HOST", None)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tango_receiver.cli "
                "import streaming_receiver; sys.exit(streaming_receiver())",
                str(config),
                "nanomax-eiger",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        consumer = Consumer(data)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    assert get(f"http://127.0.0.1:{api}/status") == {"state": "idle"}
                    break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, "REST never came up"
                    time.sleep(0.1)
            while get(f"http://127.0.0.1:{api}/stats")["consumers"] != 1:  # ZMQ reconnects
                assert time.monotonic() < deadline, "the secondary consumer never connected"
                time.sleep(0.05)
            messages = list(eiger_v1_series(frames, str(tmp_path / "scan.h5")))
            sender.send(messages[:1] + messages[1:-1])  # armed: header and frames, no end yet
            deadline = time.monotonic() + 5
            while get(f"http://127.0.0.1:{api}/status")["state"] != "running":
                assert time.monotonic() < deadline, "not running within 5 s"
                time.sleep(0.02)
            sender.send(messages[-1:])
            while get(f"http://127.0.0.1:{api}/status")["state"] != "idle":
                assert time.monotonic() < deadline + 10, "never idle again"
                time.sleep(0.02)
            assert get(f"http://127.0.0.1:{api}/received_frames") == {"value": FRAMES}
            header, blob = pickle.loads(get(f"http://127.0.0.1:{api}/last_frame"))
            assert header["compression"] == "bslz4"  # as the detector sent it
            last = bitshuffle.decompress_lz4(
                np.frombuffer(blob, np.uint8, offset=12),
                tuple(header["shape"]),
                np.dtype(header["type"]),
            )
            assert np.array_equal(last, frames[-1])
            forwarded = consumer.receive_all()
        finally:
            consumer.close()
            proc.terminate()
            output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert f"may write into {tmp_path}" in output
    htypes = [json.loads(p[0])["htype"] for p in forwarded]
    assert htypes == ["header"] + ["image"] * FRAMES + ["series_end"]
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        assert np.array_equal(f["/entry/data/data"][()], np.stack(frames))
