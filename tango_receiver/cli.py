"""tango-receiver serve | run | simulate | replay | demo | bench | stitch | split;
streaming-receiver.

The commands import what they run when they run (Tango, FastAPI and h5py take seconds to load,
and ``simulate`` needs none of them)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError, load_receiver
from .logs import setup_logging

log = logging.getLogger("tango_receiver")


HEALTH_EVERY_S = 1.0  # how soon a receiver whose thread died ends the process


def wait_for_signal(
    status_every_s: float, status: Callable[[], str], health: Callable[[], str] = lambda: ""
) -> int:
    """Block until SIGTERM or SIGINT (0), logging a status line now and then; or until
    ``health`` names why the receiver no longer works (1: a supervisor restarts it)."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    last = time.monotonic()
    while not done.wait(min(status_every_s, HEALTH_EVERY_S)):
        why = health()
        if why:
            log.error("exiting: %s", why)
            return 1
        if time.monotonic() - last >= status_every_s:
            last = time.monotonic()
            log.info(status())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .api.server import start_sidecar
    from .engine.receiver import Receiver

    config = load_receiver(args.config, args.name)
    receiver = Receiver(config)
    receiver.start()
    sidecar = None if args.no_rest else start_sidecar(receiver)
    if sidecar is not None:
        log.info("%s: REST on %s", config.name, sidecar.url)

    def status() -> str:
        s = receiver.snapshot()
        return (
            f"{config.name}: {s.state} series {s.series_id or '-'} received "
            f"{s.frames_received} written {s.frames_written} forwarded {s.frames_forwarded} "
            f"missing {s.frames_missing} invalid {s.frames_invalid} "
            f"{s.frame_rate:.0f} frames/s {s.data_rate / 1e6:.1f} MB/s"
        )

    code = 1
    try:
        code = wait_for_signal(args.status_every, status, receiver.health)
    finally:
        if sidecar is not None:
            sidecar.stop()
        receiver.close()
        log.info(
            "%s: closed %s; %s",
            config.name,
            "cleanly" if code == 0 else "after a failure",
            status(),
        )
    return code


def cmd_simulate(args: argparse.Namespace) -> int:
    from .sim.formats import default_form, default_port, series_for, wire_format
    from .sim.sender import Sender

    shape, dtype = default_form(args.format)
    if args.shape is not None:
        shape = tuple(int(v) for v in args.shape.lower().split("x"))
    dtype = args.dtype or dtype
    port = default_port(args.format) if args.port is None else args.port
    with Sender(port=port, host=args.host, timeout_s=args.timeout) as sender:
        log.info(
            "simulated %s detector on %s: %d frames %s %s at %s frames/s",
            args.format,
            sender.endpoint,
            args.frames,
            "x".join(map(str, shape)),
            dtype,
            args.rate or "max",
        )
        for series in range(args.series):
            messages = series_for(
                wire_format(args.format),
                shape=shape,
                dtype=dtype,
                count=args.frames,
                series=series,
                filename=args.filename.format(series=series),
            )
            sender.send(messages, rate=args.rate, progress=not args.quiet, total=args.frames + 2)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .sim.formats import default_port, reader
    from .sim.replay import load_capture
    from .sim.sender import Sender

    try:
        capture = load_capture(args.capture, args.filename)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    port = default_port(capture.format) if args.port is None else args.port
    with Sender(port=port, host=args.host, timeout_s=args.timeout) as sender:
        log.info(
            "replaying %s (%s, read by class %s) on %s: %d images at %s frames/s",
            args.capture,
            capture.format,
            reader(capture.format).__name__,
            sender.endpoint,
            capture.images,
            args.rate or "max",
        )
        sender.send(
            capture.messages, rate=args.rate, progress=not args.quiet, total=len(capture.messages)
        )
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from .client.consume import run

    return run(args.endpoint, args.save, args.count, args.timeout)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(
        Path(args.directory),
        frames=args.frames,
        hold=wait_for_signal if args.keep_running else None,
    )


def cmd_serve(argv: list[str]) -> int:
    """The Tango server parses its own options (and passes Tango's on to Tango)."""
    from .tango.server import serve

    parser = argparse.ArgumentParser(
        prog="tango-receiver serve",
        description="one receiver as a Tango device server, with its REST sidecar",
    )
    parser.add_argument("config", help="detectors.yaml")
    parser.add_argument("name", help="receiver name (top-level key)")
    parser.add_argument(
        "--register",
        action="store_true",
        help="add the device and its config_file/receiver_name properties to "
        "the database at TANGO_HOST first",
    )
    parser.add_argument("--nodb", action="store_true", help="run without a Tango database")
    parser.add_argument("--port", type=int, help="device server port (required with --nodb)")
    parser.add_argument("--host", help="address to listen on and publish (e.g. 127.0.0.1)")
    args, extra = parser.parse_known_args(argv)
    return serve(
        args.config,
        args.name,
        nodb=args.nodb,
        register=args.register,
        port=args.port,
        host=args.host,
        argv_extra=extra,
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.run import run_bench

    rows = run_bench(args.quick, args.directory, args.output, args.only)
    return 0 if all(r["lost"] == 0 for r in rows) else 1


def parser() -> argparse.ArgumentParser:
    from .scaleout.split import add_parser as add_split
    from .scaleout.stitch import add_parser as add_stitch
    from .sim.formats import formats

    p = argparse.ArgumentParser(prog="tango-receiver", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="one receiver and its REST sidecar, without a Tango device")
    run.add_argument("config", help="detectors.yaml")
    run.add_argument("name", help="receiver name (top-level key)")
    run.add_argument("--no-rest", action="store_true", help="no REST sidecar on api_port")
    run.add_argument(
        "--status-every", type=float, default=10.0, help="seconds between status lines"
    )
    run.set_defaults(fn=cmd_run)

    sim = sub.add_parser("simulate", help="stream simulated frames like a detector")
    sim.add_argument("format", choices=formats(), help="a wire format or a detector profile")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument(
        "--port",
        type=int,
        default=None,
        help="default: where a receiver of this format looks (its class's port: "
        "eiger 9999, stream2 31001, lambda 9010 with its modules above, ...)",
    )
    sim.add_argument("--frames", type=int, default=100)
    sim.add_argument("--series", type=int, default=1)
    sim.add_argument(
        "--rate", type=float, default=None, help="frames/s (default: as fast as taken)"
    )
    sim.add_argument(
        "--shape",
        default=None,
        help="HxW (default: the profile's, or the detectors.yaml entry's of the "
        "format's class: stream2 514x1030, eiger 1065x1030, ...)",
    )
    sim.add_argument("--dtype", default=None, help="default: as --shape")
    sim.add_argument("--filename", default="", help="file to write; {series} is replaced")
    sim.add_argument("--timeout", type=float, default=60.0, help="give up if nobody receives")
    sim.add_argument("--quiet", action="store_true")
    sim.set_defaults(fn=cmd_simulate)

    replay = sub.add_parser(
        "replay",
        help="send a recorded detector stream (stream v1 or v2 "
        "capture, or a folder of stream v2 messages)",
    )
    replay.add_argument("capture", type=Path, help="a capture zip, or a folder of *.cbor")
    replay.add_argument("--host", default="127.0.0.1")
    replay.add_argument(
        "--port",
        type=int,
        default=None,
        help="default: where a receiver of its class looks (stream v1 9999, stream v2 31001)",
    )
    replay.add_argument(
        "--filename",
        default="",
        help="file for the receiver to write (default: none, forward only)",
    )
    replay.add_argument(
        "--rate", type=float, default=None, help="frames/s (default: as fast as taken)"
    )
    replay.add_argument("--timeout", type=float, default=60.0, help="give up if nobody receives")
    replay.add_argument("--quiet", action="store_true")
    replay.set_defaults(fn=cmd_replay)

    serve = sub.add_parser(
        "serve",
        add_help=False,
        help="one receiver as a Tango device server, with its REST sidecar "
        "(see: tango-receiver serve --help)",
    )
    serve.set_defaults(fn=None)

    demo = sub.add_parser(
        "demo",
        help="Tango database + device server + REST sidecar, a "
        "simulated EIGER series into HDF5, with a report",
    )
    demo.add_argument("--directory", default="demo-data")
    demo.add_argument("--frames", type=int, default=500)
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="after the report, keep database, device, REST and a slow "
        "simulated stream up until Ctrl-C, and print how to reach them",
    )
    demo.set_defaults(fn=cmd_demo)

    consume = sub.add_parser(
        "consume", help="print (and save) what a receiver forwards on its secondary port"
    )
    consume.add_argument("endpoint", help="tcp://host:port, host:port, or a port on this machine")
    consume.add_argument(
        "--save",
        type=Path,
        default=None,
        help="directory: one HDF5 file of decoded arrays per series",
    )
    consume.add_argument("--count", type=int, default=None, help="stop after N messages")
    consume.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop after this many seconds without a message (default: never)",
    )
    consume.set_defaults(fn=cmd_consume)

    add_stitch(sub)
    add_split(sub)

    bench = sub.add_parser("bench", help="throughput, memory and live view beside baselines")
    bench.add_argument("--quick", action="store_true", help="small series: under a minute")
    bench.add_argument(
        "--directory",
        type=Path,
        default=None,
        help="write here instead of /dev/shm (to include the disk)",
    )
    bench.add_argument("--output", type=Path, default=Path("bench.json"))
    bench.add_argument("--only", nargs="*", default=[], help="scenarios whose name contains this")
    bench.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    try:
        if argv[:1] == ["serve"]:
            return cmd_serve(argv[1:])
        args = parser().parse_args(argv)
        return args.fn(args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


def streaming_receiver(argv: list[str] | None = None) -> int:
    """``streaming-receiver CONFIG NAME``, the command existing deployments run: the receiver
    with REST on ``api_port`` and the secondary port on ``data_port``; with ``TANGO_HOST`` set
    it is also a Tango device, registered in that database under its receiver name."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0].startswith("-"):
        print("usage: streaming-receiver CONFIG NAME", file=sys.stderr)
        return 2
    if os.environ.get("TANGO_HOST"):
        return cmd_serve([*argv, "--register"])
    return main(["run", *argv])


if __name__ == "__main__":
    sys.exit(main())
