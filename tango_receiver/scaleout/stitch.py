"""Scale-out: stitch the part files of one split series into a master file.

A detector faster than one receiver is served by N receivers pulling from the same upstream:
ZeroMQ's PUSH deals the frames round-robin (skipping a peer whose queue is full), so each
receiver writes its own part file holding an unpredictable share of the frames, and its
``sequence_number`` dataset says which frame each stored frame is. The master file maps every
frame number to where it lies with an HDF5 virtual dataset: readers see one series in frame
order, no pixel is copied, and the frames that no part holds are listed in the master.

Mappings are made per run (a stretch of consecutive stored frames whose numbers rise by a
constant step), not per frame: a round-robin split of N parts is a handful of strided runs, and
HDF5 slows down badly with hundreds of thousands of mappings.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle-LZ4, which reading the parts needs)
import numpy as np

log = logging.getLogger(__name__)

SEQUENCE = "sequence_number"
MISSING = "missing_frames"


class StitchError(ValueError):
    """Parts that cannot form one series; the text names the file and the reason."""


@dataclass(frozen=True)
class Part:
    """What a part file holds: its detector group, its frame datasets, and the frame number of
    each stored frame (only the frames both recorded and stored, in case the file was cut)."""

    path: Path
    detector: str
    datasets: dict[str, tuple[tuple[int, ...], np.dtype]]
    channels: tuple[str, ...]
    frames: np.ndarray
    complete: bool


@dataclass(frozen=True)
class Run:
    """Stored frames ``start .. start+count`` of one part are frames ``first, first+step, ...``."""

    start: int
    first: int
    step: int
    count: int


@dataclass(frozen=True)
class StitchResult:
    master: Path
    nframes: int
    missing: list[int]
    duplicates: int
    mappings: int


def read_part(path: Path) -> Part:
    """Index one part file; a part that received no frame has no datasets and no frames."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StitchError(f"{path}: cannot open: {exc}") from None
    with f:
        groups = _sequence_groups(f)
        complete = bool(f["entry"].attrs.get("series_complete", False)) if "entry" in f else False
        if not groups:
            return Part(path, "", {}, (), np.zeros(0, np.int64), complete)
        if len(groups) > 1:
            raise StitchError(f"{path}: {len(groups)} groups hold {SEQUENCE}: {groups}")
        det = f[groups[0]]
        numbers = det[SEQUENCE][()].astype(np.int64)
        # header fields are soft links into metadata/ (a flatfield is 2-D too): never frames
        frames = {
            name: ds
            for name, ds in det.items()
            if isinstance(ds, h5py.Dataset)
            and name != SEQUENCE
            and ds.ndim >= 2
            and isinstance(det.get(name, getlink=True), h5py.HardLink)
        }
        if not frames:
            raise StitchError(f"{path}: {groups[0]} holds {SEQUENCE} but no frame dataset")
        stored = min(len(numbers), *(ds.shape[0] for ds in frames.values()))
        channels = tuple(str(c) for c in det.attrs.get("channels", []))
        return Part(
            path,
            groups[0],
            {n: (ds.shape[1:], ds.dtype) for n, ds in frames.items()},
            channels,
            numbers[:stored],
            complete,
        )


def _sequence_groups(f: h5py.File) -> list[str]:
    """The groups holding a ``sequence_number`` dataset: the detector group, wherever
    ``dset_name`` put it."""
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        parent, _, leaf = name.rpartition("/")
        if leaf == SEQUENCE and isinstance(obj, h5py.Dataset):
            found.append(f"/{parent}")

    f.visititems(visit)
    return found


def frame_runs(frames: np.ndarray, taken: np.ndarray) -> Iterator[Run]:
    """Runs of the stored frames whose number is not ``taken`` yet (marking them taken), so a
    frame held twice is mapped once, from the first part that has it."""
    run: Run | None = None
    for index, number in enumerate(frames.tolist()):
        if number < 0 or number >= len(taken) or taken[number]:
            continue
        taken[number] = True
        if (
            run is not None
            and index == run.start + run.count
            and (
                (run.count == 1 and number > run.first)
                or number == run.first + run.step * run.count
            )
        ):
            step = number - run.first if run.count == 1 else run.step
            run = Run(run.start, run.first, step, run.count + 1)
            continue
        if run is not None:
            yield run
        run = Run(index, number, 1, 1)
    if run is not None:
        yield run


def _fill_value(dtype: np.dtype) -> float | int:
    """What a missing frame reads as: a value no counting pixel reaches (like DECTRIS's masked
    pixels), never 0, which is a real count."""
    return float("nan") if dtype.kind == "f" else int(np.iinfo(dtype).max)


def _check_parts(parts: Sequence[Part]) -> Part:
    """The reference part (the first with frames); every other must lay out the same data."""
    full = [p for p in parts if p.datasets]
    if not full:
        raise StitchError(f"no part holds any frame: {', '.join(str(p.path) for p in parts)}")
    ref = full[0]
    if not ref.channels and len(ref.datasets) != 1:
        raise StitchError(
            f"{ref.path}: {_describe(ref)}: several frame datasets but no "
            f"'channels' attribute naming them"
        )
    for part in full[1:]:
        if (part.detector, part.datasets) != (ref.detector, ref.datasets):
            raise StitchError(
                f"{part.path}: holds {part.detector} {_describe(part)}, but {ref.path} holds "
                f"{ref.detector} {_describe(ref)}: not parts of one series"
            )
    return ref


def _describe(part: Part) -> str:
    return ", ".join(f"{n} {shape} {dtype}" for n, (shape, dtype) in sorted(part.datasets.items()))


def stitch(master: Path, part_paths: Sequence[Path], nframes: int | None = None) -> StitchResult:
    """Write ``master`` (which must not exist): the parts' frames as virtual datasets in frame
    order, with the frames held by no part listed in ``missing_frames``."""
    master = Path(master)
    parts = [read_part(Path(p)) for p in part_paths]
    ref = _check_parts(parts)
    highest = max(int(p.frames.max()) for p in parts if len(p.frames))
    if nframes is None:
        nframes = highest + 1
    elif highest >= nframes:
        raise StitchError(f"the parts hold frame {highest}, beyond the {nframes} frames given")
    taken = np.zeros(nframes, dtype=bool)
    runs = [(part, list(frame_runs(part.frames, taken))) for part in parts]
    held = sum(len(p.frames) for p in parts)
    missing = np.flatnonzero(~taken)
    duplicates = held - (nframes - len(missing))
    try:
        f = h5py.File(master, "x", libver="latest")
    except OSError as exc:
        raise StitchError(f"{master}: cannot create (it must not exist yet): {exc}") from None
    with f:
        det = _layout(f, ref, parts)
        for name, (shape, dtype) in ref.datasets.items():
            layout = h5py.VirtualLayout(shape=(nframes, *shape), dtype=dtype)
            for part, part_runs in runs:
                _map_runs(layout, part, part_runs, f"{ref.detector}/{name}", master)
            det.create_virtual_dataset(name, layout, fillvalue=_fill_value(dtype))
        _link_data(f, det, ref)
        det.create_dataset(SEQUENCE, data=np.arange(nframes, dtype=np.int64))
        det.create_dataset(MISSING, data=missing.astype(np.int64))
        entry = f["entry"]
        entry.attrs["frames_written"] = nframes - len(missing)
        entry.attrs["frames_missing"] = len(missing)
        entry.attrs["series_complete"] = not len(missing) and all(p.complete for p in parts)
    mappings = sum(len(r) for _, r in runs) * len(ref.datasets)
    return StitchResult(master, nframes, missing.tolist(), duplicates, mappings)


def _map_runs(
    layout: h5py.VirtualLayout, part: Part, runs: Sequence[Run], dataset: str, master: Path
) -> None:
    """Map each run of ``part``'s ``dataset`` onto its frame numbers in ``layout``."""
    if not runs:
        return
    source = h5py.VirtualSource(
        _relative(part.path, master),
        dataset,
        shape=(len(part.frames), *layout.shape[1:]),
        dtype=layout.dtype,
    )
    for run in runs:
        stop = run.first + run.step * (run.count - 1) + 1
        layout[run.first : stop : run.step] = source[run.start : run.start + run.count]


def _relative(part: Path, master: Path) -> str:
    """Source files are named relative to the master (HDF5 looks beside the master first), so
    the series can be moved or mounted elsewhere as one directory."""
    return os.path.relpath(part.resolve(), master.resolve().parent)


def _layout(f: h5py.File, ref: Part, parts: Sequence[Part]) -> h5py.Group:
    """The NeXus groups of the parts, with the detector's metadata copied from the first part."""
    entry = f.require_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    f.attrs["default"] = "entry"
    entry.attrs["parts"] = [_relative(p.path, Path(f.filename)) for p in parts]
    instrument = entry.require_group("instrument")
    instrument.attrs["NX_class"] = "NXinstrument"
    det = f.require_group(ref.detector)
    with h5py.File(ref.path, "r") as src:
        for key, value in src[ref.detector].attrs.items():
            det.attrs[key] = value
        if "metadata" in src[ref.detector]:
            src.copy(src[ref.detector]["metadata"], det, "metadata")
        for name in src[ref.detector]:  # the header fields' links beside it, as in a part
            link = src[ref.detector].get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                det[name] = h5py.SoftLink(link.path)
        if "series_id" in src["entry"].attrs:
            entry.attrs["series_id"] = src["entry"].attrs["series_id"]
    return det


def _link_data(f: h5py.File, det: h5py.Group, ref: Part) -> None:
    """/entry/data as in a part: ``data`` for one channel, one link per channel otherwise
    (the writer names a channel's dataset ``<dset_name>_<channel>``)."""
    data = f["entry"].require_group("data")
    data.attrs["NX_class"] = "NXdata"
    if not ref.channels:
        data["data"] = det[next(iter(ref.datasets))]
        data.attrs["signal"] = "data"
        return
    for channel in ref.channels:
        for name in ref.datasets:
            if name.endswith(f"_{channel}"):
                data[channel] = det[name]
    data.attrs["signal"] = ref.channels[0]


def _ranges(numbers: Sequence[int]) -> str:
    """``0, 3-5, 9``: missing frames as an operator reads them."""
    out: list[str] = []
    start: int | None = None
    prev = -1
    for n in [*numbers, None]:
        if start is not None and n is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start, prev = n, (n if n is not None else prev)
    return ", ".join(out)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``tango-receiver stitch MASTER PART...``."""
    p = sub.add_parser(
        "stitch",
        help="master file: the part files of a split series as one virtual dataset in frame order",
        description="Exit status: 0 every frame is held by a part, 1 frames are "
        "missing (listed in the master), 2 the parts cannot be "
        "stitched.",
    )
    p.add_argument("master", type=Path, help="master file to create (must not exist)")
    p.add_argument("parts", type=Path, nargs="+", help="part files of the series")
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames in the series (default: the highest frame number held + 1; "
        "give it so that frames missing at the end are counted)",
    )
    p.set_defaults(fn=cmd_stitch)
    return p


def cmd_stitch(args: argparse.Namespace) -> int:
    try:
        result = stitch(args.master, args.parts, args.frames)
    except StitchError as exc:
        log.error("stitch: %s", exc)
        return 2
    log.info(
        "%s: %d frames from %d parts in %d mappings",
        result.master,
        result.nframes,
        len(args.parts),
        result.mappings,
    )
    if result.duplicates:
        log.warning(
            "%s: %d frames held by more than one part; the first part's copy is used",
            result.master,
            result.duplicates,
        )
    if result.missing:
        log.warning(
            "%s: %d frames held by no part: %s",
            result.master,
            len(result.missing),
            _ranges(result.missing),
        )
        return 1
    return 0
