"""Each measurement runs in processes of its own: a sender process plays the detector, and the
receiver (or the bare baseline loop) runs in another, so its peak RSS is its own and the two
compete for the two cores exactly as a detector's receiver does.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import zmq

from ..sim.consumer import drain
from .scenarios import SCENARIOS, Scenario

log = logging.getLogger(__name__)

CTX = mp.get_context("spawn")
TIMEOUT_S = 300
WARM_BLOCK = 8 << 20
LIVEVIEW_BINNING = 4  # 16M frames are viewed binned; 4 x 4 gives about 1000 x 1000


def scenario_named(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def peak_rss_mb() -> float:
    """This process's own peak (VmHWM): ru_maxrss would carry the parent's over exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def warm_memory(nbytes: int, directory: Path) -> None:
    """Write ``nbytes`` into a file in ``directory`` and free it, just before a writer starts.

    A virtual machine whose balloon reports free pages to the host (Firecracker's, where this
    suite was written) hands them back; the first touch of such a page costs a fault in the
    host, and a tmpfs file written into them grows ten times slower (benchmarks/LOG.md). How
    many of those pages a writer meets depends on what ran in the seconds before it. Writing
    the series' size first gives the bare h5py loop and the receiver the same start. A file,
    not an array: the pages do not count in the writer's peak RSS. Best effort: a directory
    too small for it is the writer's to report."""
    block = np.ones(WARM_BLOCK, np.uint8)
    try:
        with tempfile.TemporaryFile(dir=directory) as f:
            for _ in range(0, nbytes, WARM_BLOCK):
                f.write(block.data)
    except OSError as exc:
        log.warning("bench: memory not warmed in %s: %s", directory, exc)


# --- the detector --------------------------------------------------------------------------
def _send(name: str, quick: bool, filename: str, port: Any, ready: Any, cpu: Any) -> None:
    scenario = scenario_named(name)
    messages = list(scenario.messages(filename, quick))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 1000)
    port.value = sock.bind_to_random_port("tcp://127.0.0.1")
    ready.set()
    start = time.process_time()
    for parts in messages:
        sock.send_multipart(parts, copy=False)
    sock.close(linger=TIMEOUT_S * 1000)
    ctx.term()  # returns once ZMQ's I/O thread has sent everything: its CPU is counted too
    cpu.value = time.process_time() - start


class Sender:
    """The detector's process, and the CPU it spent sending (known once it has ended)."""

    def __init__(self, scenario: Scenario, quick: bool, filename: str) -> None:
        port, ready, self._cpu = CTX.Value("i", 0), CTX.Event(), CTX.Value("d", float("nan"))
        self.process = CTX.Process(
            target=_send, args=(scenario.name, quick, filename, port, ready, self._cpu), daemon=True
        )
        self.process.start()
        if not ready.wait(TIMEOUT_S):
            self.process.kill()
            raise RuntimeError(f"{scenario.name}: sender did not start")
        self.port = port.value

    @property
    def cpu_s(self) -> float:
        return self._cpu.value


# --- baselines -----------------------------------------------------------------------------
def _pull(name: str, quick: bool, port: int, out: Any, store: tuple[str, int] | None) -> None:
    """The bare loop; with ``store`` (a directory, the bytes the series stores) it also writes
    each image's last part with ``write_direct_chunk`` into a file there, pre-sized."""
    scenario = scenario_named(name)
    count = scenario.count(quick)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.connect(f"tcp://127.0.0.1:{port}")
    path = Path(store[0]) / f"pull_store_{name}.h5" if store else None
    f = ds = None
    if store is not None and path is not None:
        warm_memory(store[1], path.parent)
        f = h5py.File(path, "w")
        ds = f.create_dataset(
            "data",
            shape=(count, *scenario.shape),
            chunks=(1, *scenario.shape),
            dtype=scenario.dtype,
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
    nbytes = 0
    sock.recv_multipart(copy=False)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(count + 1):  # images, end
        parts = sock.recv_multipart(copy=False)
        nbytes += sum(len(p) for p in parts)
        if ds is not None and i < count:
            ds.id.write_direct_chunk((i, 0, 0), parts[-1])
    out.put(
        {
            "seconds": time.perf_counter() - start,
            "frames": count,
            "cpu_s": time.process_time() - cpu,
            "wire_bytes": nbytes,
            "rss_mb": peak_rss_mb(),
        }
    )
    if f is not None and path is not None:
        f.close()
        path.unlink()
    sock.close()
    ctx.term()


def measure_pull(
    scenario: Scenario, quick: bool, store: tuple[Path, int] | None = None
) -> dict[str, Any]:
    """A bare pyzmq PULL loop (copy=False) taking the same messages and discarding them; with
    ``store`` (directory, bytes stored), writing each chunk as it came (``write_direct_chunk``)."""
    sender = Sender(scenario, quick, "")
    out = CTX.Queue()
    where = (str(store[0]), store[1]) if store else None
    result = _collect(
        [CTX.Process(target=_pull, args=(scenario.name, quick, sender.port, out, where))],
        out,
        sender.process,
    )[0]
    return result | {"sender_cpu_s": sender.cpu_s}


def bracket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Two runs of the bare loop as one: frames, seconds and CPU added up, so the rate and
    the CPU per frame are those of both runs together."""
    return before | {key: before[key] + after[key] for key in ("frames", "seconds", "cpu_s")}


def measure_h5(scenario: Scenario, quick: bool, directory: Path) -> dict[str, Any]:
    """A bare h5py write_direct_chunk loop of the same chunks, into the same directory."""
    chunks = scenario.chunks()
    count = scenario.count(quick)
    nbytes = sum(len(chunks[i % len(chunks)]) for i in range(count))
    path = directory / f"baseline_{scenario.name}.h5"
    warm_memory(nbytes, directory)
    start = time.perf_counter()
    with h5py.File(path, "w", libver="latest") as f:
        ds = f.create_dataset(
            "data",
            shape=(count, *scenario.shape),
            chunks=(1, *scenario.shape),
            dtype=scenario.dtype,
            **hdf5plugin.Bitshuffle(cname="lz4"),
        )
        for i in range(count):
            ds.id.write_direct_chunk((i, 0, 0), chunks[i % len(chunks)])
    seconds = time.perf_counter() - start
    path.unlink()
    return {"seconds": seconds, "frames": count, "stored_bytes": nbytes}


def measure_decode(scenario: Scenario, quick: bool) -> dict[str, Any]:
    """The decoders alone, in ``scenario.nworkers`` threads of this process, on the sender's
    messages: what the workers reach when the cores are theirs (no sender, no ZMQ, no file)."""
    from ..detector import detector_for

    messages = list(scenario.messages("", quick))[1:-1]
    detector = detector_for(_config(scenario, port=1, directory="/dev/shm"))  # never opened
    decoded = [0] * scenario.nworkers  # a decoder that fails stops its thread short

    def work(index: int) -> None:
        for parts in messages[index :: scenario.nworkers]:
            detector.decode(parts)
            decoded[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(scenario.nworkers)]
    detector.decode(messages[0])  # first-use costs (imports, caches) are not the rate
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"seconds": time.perf_counter() - start, "frames": sum(decoded)}


# --- the receiver --------------------------------------------------------------------------
def _config(scenario: Scenario, port: int, directory: str, file_suffix: str = "") -> Any:
    from ..config import parse_entry

    return parse_entry(
        f"bench-{scenario.name}",
        {
            "class": scenario.detector_class,
            "upstream": [f"tcp://127.0.0.1:{port}"],
            "nworkers": scenario.nworkers,
            "data_host": "127.0.0.1",
            "data_port": 0,
            "shape": list(scenario.shape),
            "dtype": scenario.dtype,  # as a deployment's entry says
            "write_roots": [directory],
            "file_suffix": file_suffix,
            **scenario.config,
        },
    )


def _receive(
    name: str,
    quick: bool,
    port: int,
    directory: str,
    baseline_fps: float,
    warm_bytes: int,
    out: Any,
    file_suffix: str = "",
) -> None:
    from ..engine.receiver import Receiver

    scenario = scenario_named(name)
    receiver = Receiver(_config(scenario, port, directory, file_suffix))
    warm_memory(warm_bytes, Path(directory))
    receiver.open()
    consumer, stop = None, CTX.Event()
    if scenario.consumer_fraction:
        delay = 1.0 / (baseline_fps * scenario.consumer_fraction)
        consumer = CTX.Process(target=drain, args=(receiver.secondary_port, delay, stop))
        consumer.start()
    latencies: list[float] = []
    empty = [0]
    if scenario.probe_liveview:
        receiver.downsample = LIVEVIEW_BINNING  # set up before the series, as an operator does
        threading.Thread(
            target=_probe_liveview, args=(receiver, latencies, empty), daemon=True
        ).start()
    cpu = time.process_time()  # every thread of this process: engine, workers, ZMQ I/O
    receiver.start()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        snap = receiver.snapshot()
        if snap.series_count and not snap.in_series and snap.queue_depth == 0:
            break
        time.sleep(0.01)
    cpu = time.process_time() - cpu
    receiver.close()
    stop.set()
    if consumer is not None:
        consumer.join(10)
    out.put(
        {
            "seconds": snap.series_duration_s,
            "frames": snap.frames_written,
            "cpu_s": cpu,
            "wire_bytes": snap.bytes_wire,
            "stored_bytes": snap.bytes_stored,
            "raw_bytes": snap.bytes_raw,
            "forward_dropped": snap.forward_dropped,
            "roi_skipped": snap.roi_skipped,
            "rss_mb": peak_rss_mb(),
            "liveview_ms": (
                statistics.median(latencies) * 1000,
                max(latencies) * 1000,
                len(latencies),
                empty[0],
            )
            if latencies
            else None,
        }
    )


def _probe_liveview(receiver: Any, latencies: list[float], empty: list[int]) -> None:
    """What a live-view client costs and waits: the latest frame 10 times a second, binned
    as the REST and Tango live views ask for it (the receiver's ``downsample``). Every answer
    once frames arrive is timed; ``empty`` counts those that had no frame to show yet."""
    while receiver.snapshot().series_count == 0 or receiver.snapshot().in_series:
        if receiver.snapshot().frames_received:
            start = time.perf_counter()
            if receiver.liveview.view(receiver.downsample) is None:
                empty[0] += 1
            latencies.append(time.perf_counter() - start)
        time.sleep(0.1)


def _split(name: str, port: int, ports: Any, ready: Any, stop: Any) -> None:
    """The scale-out relay in a process of its own, as it runs in a deployment."""
    from ..scaleout.split import Splitter

    splitter = Splitter(
        [f"tcp://127.0.0.1:{port}"], scenario_named(name).detector_class, len(ports)
    )
    ports[:] = splitter.ports
    ready.set()
    relay = threading.Thread(target=splitter.run, daemon=True)
    relay.start()
    stop.wait(TIMEOUT_S)
    splitter.stop()
    relay.join()
    splitter.close()


def measure_receiver(
    scenario: Scenario, quick: bool, directory: Path, baseline_fps: float, stored_bytes: int
) -> dict[str, Any]:
    """One receiver process, or ``scenario.parts`` of them behind the splitter (scale-out);
    each warms its share of the ``stored_bytes`` the series writes (``warm_memory``)."""
    filename = str(directory / f"receiver_{scenario.name}.h5")
    sender = Sender(scenario, quick, filename)
    port = sender.port
    upstreams, splitter, stop = [port], None, CTX.Event()
    if scenario.parts > 1:
        ports, ready = CTX.Array("i", scenario.parts), CTX.Event()
        splitter = CTX.Process(
            target=_split, args=(scenario.name, port, ports, ready, stop), daemon=True
        )
        splitter.start()
        if not ready.wait(TIMEOUT_S):
            raise RuntimeError(f"{scenario.name}: splitter did not start")
        upstreams = list(ports[:])
    out = CTX.Queue()
    procs = [
        CTX.Process(
            target=_receive,
            args=(
                scenario.name,
                quick,
                upstream,
                str(directory),
                baseline_fps,
                stored_bytes // len(upstreams),
                out,
                f"_part{i}" if splitter else "",
            ),
        )
        for i, upstream in enumerate(upstreams)
    ]
    try:
        parts = _collect(procs, out, sender.process)
    finally:
        stop.set()
        if splitter is not None:
            splitter.join(30)
        for path in directory.glob(f"receiver_{scenario.name}*.h5"):
            path.unlink()
    frames = sum(p["frames"] for p in parts)
    return {
        "seconds": max(p["seconds"] for p in parts),
        "frames": frames,
        "lost": scenario.count(quick) - frames,
        **{
            key: sum(p[key] for p in parts)
            for key in (
                "cpu_s",
                "wire_bytes",
                "stored_bytes",
                "raw_bytes",
                "forward_dropped",
                "roi_skipped",
            )
        },
        "rss_mb": max(p["rss_mb"] for p in parts),
        "liveview_ms": parts[0]["liveview_ms"],
        "sender_cpu_s": sender.cpu_s,
    }


def _collect(procs: list[Any], out: Any, sender: Any) -> list[dict[str, Any]]:
    """Each process's result; every process is gone when this returns."""
    for proc in procs:
        proc.start()
    try:
        return [out.get(timeout=TIMEOUT_S) for _ in procs]
    finally:
        for proc in (*procs, sender):
            proc.join(30)
            if proc.is_alive():
                proc.kill()


def frames_per_s(result: dict[str, Any]) -> float:
    return result["frames"] / result["seconds"] if result["seconds"] else float("nan")
