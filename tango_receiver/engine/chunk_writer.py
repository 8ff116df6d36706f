"""Direct chunk writes of a run of frames in one call, by compiled code (``native.py``)."""

from __future__ import annotations

import h5py
from h5py._objects import phil

from ..messages import Buffer
from ..native import v1lane


def write_chunks(
    dataset: h5py.Dataset, frame_shape: tuple[int, ...], first: int, chunks: list[Buffer]
) -> tuple[int, int]:
    """(chunks written, errno of the failure or 0): ``H5Dwrite_chunk`` of each chunk at frame
    ``first + i``, under h5py's lock, without the GIL. Only called for runs the lane made, so
    only where the extension is built. The dataset's rank comes from ``frame_shape`` (the
    dataset is frames of it): h5py's ``ndim`` asks HDF5 each time, 5 us a run."""
    assert v1lane is not None
    with phil:
        return v1lane.write_chunks(dataset.id.id, 1 + len(frame_shape), first, chunks)
