"""What a Pilatus receiver does to a decoded frame before it is stored: ToT -> rotate -> mask.

The order is the one the existing deployments' ``PilatusPipeline`` used, and it matters: the ToT
table is indexed by the detector's own pixel coordinates, so it is applied before rotating, and
mask regions are given in the coordinates of the stored (rotated) image, so they come last.

- ``tot``: an ``.npz`` holding ``tot_to_energy_tensor`` of shape (rows, cols, depth); a pixel of
  value v in 0..depth-1 becomes ``table[row, col, v]`` (float32); v < 0 (gaps, bad pixels)
  becomes -1, v >= depth (beyond the calibration) becomes -2.
- ``rotate: true``: 90 degrees clockwise (``np.rot90(image, -1)``), as for the L-shaped CoSAXS
  Pilatus 2M that the option was made for.
- ``mask``: rectangles set to -1. The existing form ``[[row_start, row_stop], [col_start,
  col_stop]]`` is one rectangle (stops exclusive, as Python slices); several rectangles are
  written ``[[row_start, row_stop, col_start, col_stop], ...]``. A rectangle reaching past the
  image is clipped to it.

Everything is whole-array numpy (the lookup is one ``take``), so it runs in the decoder workers
largely without the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOT_KEY = "tot_to_energy_tensor"
BELOW_RANGE = -1.0  # a ToT value below the table (Pilatus marks gaps and bad pixels negative)
ABOVE_RANGE = -2.0  # a ToT value beyond the calibrated depth
MASKED = -1

Region = tuple[slice, slice]


@dataclass(frozen=True)
class TotTable:
    """A per-pixel lookup from time-over-threshold to energy, flattened once for ``take``."""

    values: np.ndarray  # (rows * cols * depth,) float32
    shape: tuple[int, int]
    depth: int
    offsets: np.ndarray  # (rows, cols): where each pixel's row of the table starts

    @classmethod
    def load(cls, path: Path) -> TotTable:
        try:
            archive = np.load(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read ToT table {path}: {exc}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"ToT table {path} is not an .npz archive")
        with archive:
            if TOT_KEY not in archive.files:
                raise ValueError(f"ToT table {path} has no array {TOT_KEY!r}")
            table = archive[TOT_KEY]
        if table.ndim != 3 or 0 in table.shape or table.dtype.kind not in "iuf":
            raise ValueError(
                f"ToT table {path}: {TOT_KEY} must be a numeric (rows, cols, depth) "
                f"array, got {table.shape} {table.dtype}"
            )
        rows, cols, depth = table.shape
        # float32 before the lookup gives the same values as after: each is rounded once
        values = np.ascontiguousarray(table, dtype=np.float32).reshape(-1)
        # int32 indices where they reach (any table below 8 GiB): half the memory traffic
        index_type = np.int32 if values.size <= np.iinfo(np.int32).max else np.int64
        offsets = (np.arange(rows * cols, dtype=index_type) * depth).reshape(rows, cols)
        return cls(values, (rows, cols), depth, offsets)

    def convert(self, tot: np.ndarray) -> np.ndarray:
        if tot.shape != self.shape:
            raise ValueError(
                f"ToT table is for {self.shape[0]} x {self.shape[1]} pixels, the "
                f"image is {' x '.join(map(str, tot.shape))}"
            )
        index = np.clip(tot, 0, self.depth - 1).astype(self.offsets.dtype, copy=False)
        index += self.offsets
        energy = self.values.take(index)
        energy[tot < 0] = BELOW_RANGE
        energy[tot >= self.depth] = ABOVE_RANGE
        return energy


@dataclass(frozen=True)
class ImageTransform:
    tot: TotTable | None = None
    rotate: bool = False
    regions: tuple[Region, ...] = ()

    @classmethod
    def from_options(
        cls, tot: Path | None, rotate: bool, mask: Sequence[Sequence[int]] | None
    ) -> ImageTransform:
        """From the receiver's ``tot``, ``rotate`` and ``mask``; ValueError says what is wrong."""
        return cls(TotTable.load(tot) if tot else None, bool(rotate), mask_regions(mask or []))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The stored frame; may modify ``image`` (the caller's freshly decoded array)."""
        if self.tot is not None:
            image = self.tot.convert(image)
        if self.rotate:
            image = np.ascontiguousarray(np.rot90(image, -1))
        for rows, cols in self.regions:
            image[rows, cols] = MASKED
        return image


def mask_regions(mask: Sequence[Sequence[int]]) -> tuple[Region, ...]:
    """Rectangles from either mask form (see the module docstring)."""
    if not mask:
        return ()
    lengths = {len(item) for item in mask}
    if lengths == {2} and len(mask) == 2:
        (r0, r1), (c0, c1) = mask
        bounds = [(r0, r1, c0, c1)]
    elif lengths == {4}:
        bounds = [(r0, r1, c0, c1) for r0, r1, c0, c1 in mask]
    else:
        raise ValueError(
            f"mask must be [[row_start, row_stop], [col_start, col_stop]] or a list "
            f"of [row_start, row_stop, col_start, col_stop], got {mask!r}"
        )
    regions = []
    for r0, r1, c0, c1 in bounds:
        if not (0 <= r0 < r1 and 0 <= c0 < c1):
            raise ValueError(f"mask region rows {r0}:{r1} cols {c0}:{c1} is empty or negative")
        regions.append((slice(r0, r1), slice(c0, c1)))
    return tuple(regions)
