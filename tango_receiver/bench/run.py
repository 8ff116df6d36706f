"""tango-receiver bench: every scenario beside its baselines, measured in the same run."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from .measure import (
    bracket,
    frames_per_s,
    measure_decode,
    measure_h5,
    measure_pull,
    measure_receiver,
)
from .scenarios import SCENARIOS
from .targets import check

log = logging.getLogger(__name__)

COLUMNS = (
    "scenario",
    "frames",
    "raw kB/frame",
    "wire kB/frame",
    "receiver f/s",
    "raw GB/s",
    "wire GB/s",
    "PULL f/s",
    "recv/PULL",
    "h5py f/s",
    "recv/h5py",
    "PULL+h5py f/s",
    "recv/PULL+h5py",
    "decode f/s",
    "CPU us/frame",
    "PULL CPU us/frame",
    "PULL+h5py CPU us/frame",
    "sender CPU us/frame",
    "peak RSS MB",
    "lost",
    "fwd dropped",
    "roi skipped",
    "liveview ms (median/max)",
    "liveview answers",
)
TARGET_COLUMNS = ("target", "measured", "met")


def run_bench(quick: bool, directory: Path | None, output: Path, only: list[str]) -> list[dict]:
    rows: list[dict[str, Any]] = []
    scenarios = [s for s in SCENARIOS if not only or any(o in s.name for o in only)]
    with tempfile.TemporaryDirectory(dir=directory or "/dev/shm", prefix="bench-") as tmp:
        where = Path(tmp)
        for scenario in scenarios:
            log.info("%s: %s, %d frames", scenario.name, scenario.title, scenario.count(quick))
            before = measure_pull(scenario, quick)
            h5 = measure_h5(scenario, quick, where)
            store = (where, h5["stored_bytes"]) if scenario.store_loop else None
            store_before = measure_pull(scenario, quick, store) if store else None
            decode = measure_decode(scenario, quick) if scenario.time_decoders else None
            recv = measure_receiver(
                scenario,
                quick,
                where,
                baseline_fps=frames_per_s(before),
                stored_bytes=h5["stored_bytes"],
            )
            # the bare loops on both sides of the receiver: a machine that drifts during the
            # run moves the baseline the same way, not one side of the ratio only
            pull = bracket(before, measure_pull(scenario, quick))
            stored = (
                bracket(store_before, measure_pull(scenario, quick, store))
                if store_before
                else None
            )
            rows.append(_row(scenario.name, pull, h5, stored, decode, recv))
            log.info("%s", rows[-1])
    verdicts = check(rows)
    output.write_text(
        json.dumps(
            {
                "quick": quick,
                "directory": str(directory or "/dev/shm"),
                "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                "rows": rows,
                "targets": verdicts,
            },
            indent=2,
        )
    )
    print(table(rows, COLUMNS), table(verdicts, TARGET_COLUMNS), sep="\n\n")
    return rows


def _row(
    name: str, pull: dict, h5: dict, stored: dict | None, decode: dict | None, recv: dict
) -> dict[str, Any]:
    frames = max(recv["frames"], 1)
    fps, pull_fps, h5_fps = frames_per_s(recv), frames_per_s(pull), frames_per_s(h5)
    stored_fps = frames_per_s(stored) if stored else None
    return {
        "scenario": name,
        "frames": recv["frames"],
        "raw kB/frame": recv["raw_bytes"] / frames / 1e3,
        "wire kB/frame": recv["wire_bytes"] / frames / 1e3,
        "receiver f/s": fps,
        "raw GB/s": recv["raw_bytes"] / recv["seconds"] / 1e9 if recv["seconds"] else 0.0,
        "wire GB/s": recv["wire_bytes"] / recv["seconds"] / 1e9 if recv["seconds"] else 0.0,
        "PULL f/s": pull_fps,
        "recv/PULL": fps / pull_fps,
        "h5py f/s": h5_fps,
        "recv/h5py": fps / h5_fps,
        "PULL+h5py f/s": stored_fps,
        "recv/PULL+h5py": fps / stored_fps if stored_fps else None,
        "decode f/s": frames_per_s(decode) if decode else None,
        # what the receiver's process spends per frame, beside the bare loop's: the receiver's
        # own cost, apart from the cores it shares with the sender (and a consumer)
        "CPU us/frame": recv["cpu_s"] / frames * 1e6,
        "PULL CPU us/frame": _cpu_us_per_frame(pull),
        "PULL+h5py CPU us/frame": _cpu_us_per_frame(stored) if stored else None,
        "sender CPU us/frame": recv["sender_cpu_s"] / frames * 1e6,
        "peak RSS MB": recv["rss_mb"],
        "lost": recv["lost"],
        "fwd dropped": recv["forward_dropped"],
        "roi skipped": recv["roi_skipped"],
        **_liveview(recv["liveview_ms"]),
    }


def _cpu_us_per_frame(loop: dict) -> float:
    """A bare loop's CPU per frame, over the frames it took."""
    return loop["cpu_s"] / max(loop["frames"], 1) * 1e6


def _liveview(result: tuple[float, float, int, int] | None) -> dict[str, Any]:
    if result is None:
        return {"liveview ms (median/max)": None, "liveview answers": None}
    median, longest, answers, empty = result
    return {
        "liveview ms (median/max)": [round(median), round(longest)],
        "liveview answers": f"{answers} ({empty} nothing yet)",
    }


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
        if isinstance(value, list):
            return "/".join(cell(v) for v in value)
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
