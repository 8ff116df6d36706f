"""make demo: a simulated EIGER streams a series through a receiver into HDF5.

Everything runs on this machine on embedded defaults: the detectors.yaml entry ``eiger-sim``
with its upstream pointed at the simulator, files under the demo directory.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np

from .config import load_receiver
from .engine.receiver import Receiver
from .sim.eiger_v1 import eiger_v1_series
from .sim.frames import synthetic_frames
from .sim.sender import Sender

log = logging.getLogger(__name__)
CONFIG = Path(__file__).resolve().parent.parent / "detectors.yaml"


def run_demo(directory: Path, frames: int = 1000, rate: float = 500.0) -> int:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    filename = directory / f"eiger_demo_{time.strftime('%Y%m%d_%H%M%S')}.h5"
    images = synthetic_frames(8, (1065, 1030), "uint32")
    with Sender() as sender:
        base = load_receiver(CONFIG, "eiger-sim")
        upstream = [base.upstream[0].model_copy(update={"port": sender.port})]
        config = base.model_copy(update={"upstream": upstream, "data_port": 0,
                                         "write_roots": [directory]})
        with Receiver(config) as receiver:
            thread = threading.Thread(target=sender.send, args=(
                eiger_v1_series(images, str(filename), count=frames),), kwargs={"rate": rate})
            thread.start()
            while thread.is_alive() or receiver.snapshot().state == "running":
                s = receiver.snapshot()
                print(f"  state {s.state:8} received {s.frames_received:5} written "
                      f"{s.frames_written:5} {s.frame_rate:7.0f} frames/s", flush=True)
                time.sleep(0.5)
            thread.join()
            snap = receiver.snapshot()
    with h5py.File(filename, "r") as f:
        data = f["/entry/data/data"]
        same = all(np.array_equal(data[i], images[i % len(images)]) for i in range(data.shape[0]))
        print(f"\n{filename}: /entry/data/data {data.shape} {data.dtype}, "
              f"series_complete={f['entry'].attrs['series_complete']}, "
              f"every frame equal to the one sent: {same}")
    print(f"received {snap.frames_received}, written {snap.frames_written}, missing "
          f"{snap.frames_missing}, invalid {snap.frames_invalid}, compression ratio "
          f"{snap.compression_ratio:.1f}")
    return 0 if same and snap.frames_written == frames else 1
