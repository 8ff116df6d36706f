"""The targets the receiver is held to, checked against one run's rows.

The numbers depend on the machine (on the development machine's two cores the simulated
detector competes with the receiver), so each run says for itself which targets hold where it
ran, beside the table it measured them from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Rows = dict[str, dict[str, Any]]  # a run's rows by scenario name


@dataclass(frozen=True)
class Target:
    what: str
    value: Callable[[Rows], float]  # raises KeyError when a scenario it needs was not run
    limit: float
    above: bool = True  # met at or above the limit; else met below it


def _column(scenario: str, column: str) -> Callable[[Rows], float]:
    return lambda rows: rows[scenario][column]


def _rate(scenario: str, over: str) -> Callable[[Rows], float]:
    return lambda rows: rows[scenario]["receiver f/s"] / rows[over]["receiver f/s"]


def _liveview_max_ms(rows: Rows) -> float:
    answered = rows["2-eiger2-16m"]["liveview ms (median/max)"]
    if answered is None:
        raise KeyError("no live-view answer was timed")
    return answered[1]


TARGETS = [
    Target("1: at least 10,000 frames/s", _column("1-eiger-v1", "receiver f/s"), 10_000),
    Target("1: at least 0.9 x the bare PULL loop", _column("1-eiger-v1", "recv/PULL"), 0.9),
    Target("2: at least 0.9 x the bare PULL loop", _column("2-eiger2-16m", "recv/PULL"), 0.9),
    Target("2: at least 0.8 x the bare h5py loop", _column("2-eiger2-16m", "recv/h5py"), 0.8),
    Target("3: 2 workers at least 1.6 x 1 worker", _rate("3-zyla-2w", "3-zyla-1w"), 1.6),
    Target("4: 2 workers at least 1.7 x 1 worker", _rate("4-pilatus-2w", "4-pilatus-1w"), 1.7),
    Target(
        "5: at least 0.95 x scenario 1's rate", _rate("5-eiger-slow-consumer", "1-eiger-v1"), 0.95
    ),
    *(
        target
        for size in ("38k", "137k")
        for target in (
            Target(
                f"6 ({size}): at least 1.3 x the bare PULL + write_direct_chunk loop",
                _column(f"6-general-{size}", "recv/PULL+h5py"),
                1.3,
            ),
            Target(
                f"6 ({size}): at least 1.8 x its own Python path",
                _rate(f"6-general-{size}", f"6-general-{size}-python"),
                1.8,
            ),
        )
    ),
    Target(
        "no frame lost, in any scenario",
        lambda rows: sum(r["lost"] for r in rows.values()),
        1,
        above=False,
    ),
    Target(
        "peak RSS under 1 GiB (MB), in any scenario",
        lambda rows: max(r["peak RSS MB"] for r in rows.values()),
        1024,
        above=False,
    ),
    Target(
        "live view under 50 ms during scenario 2 (longest answer)",
        _liveview_max_ms,
        50,
        above=False,
    ),
    Target(
        "8: 4 ROIs at least 0.9 x the rate without", _rate("8-4m-bslz4-rois", "8-4m-bslz4"), 0.9
    ),
]


def check(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target that this run's scenarios can say something about (``--only`` may leave
    some out), with the value measured and whether it holds."""
    if not rows:
        return []
    by_name = {row["scenario"]: row for row in rows}
    verdicts = []
    for target in TARGETS:
        try:
            value = target.value(by_name)
        except KeyError:  # a scenario it needs was not run
            continue
        met = value >= target.limit if target.above else value < target.limit
        verdicts.append({"target": target.what, "measured": value, "met": met})
    return verdicts
